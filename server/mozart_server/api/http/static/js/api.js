// Mozart's REST endpoints as the page uses them: the model list and whole-file classify.

import { PageError } from "./errors.js";

/** An address relative to the page, so the page also works behind a path prefix. */
export function endpoint(path) {
  return new URL(path, document.baseURI);
}

function authHeaders(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Reads an error body ({"error": {"code", "message"}}) into a PageError. */
async function failure(response) {
  let code = "";
  let message = "";
  try {
    const body = await response.json();
    const error = body && body.error;
    if (error && typeof error === "object") {
      code = error.code || "";
      message = error.message || "";
    } else if (typeof error === "string") {
      message = error;
    }
  } catch {
    // Not JSON (a proxy's page, say): the HTTP status tells enough.
  }
  const byStatus = { 400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED" };
  return new PageError(code || byStatus[response.status] || "INTERNAL",
    message || `HTTP ${response.status} ${response.statusText}`);
}

async function send(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (error) {
    throw new PageError("NETWORK", "", String(error));
  }
  if (!response.ok) {
    throw await failure(response);
  }
  return response.json();
}

/** The first present field among names (the JSON may use snake_case or camelCase). */
function field(object, ...names) {
  for (const name of names) {
    if (object && object[name] !== undefined) {
      return object[name];
    }
  }
  return undefined;
}

/** A model as the page needs it, from one entry of GET /v1/models. */
export function modelInfo(entry) {
  return {
    name: entry.name,
    versions: field(entry, "versions") || [],
    labels: field(entry, "labels") || [],
    sampleRateHz: Number(field(entry, "sample_rate_hz", "sampleRateHz") || 0),
    windowMs: Number(field(entry, "window_ms", "windowMs") || 0),
    defaultHopMs: Number(field(entry, "default_hop_ms", "defaultHopMs") || 0),
  };
}

/** GET /v1/models: the models the server serves. */
export async function listModels(token) {
  const body = await send(endpoint("v1/models"), { headers: authHeaders(token) });
  const entries = Array.isArray(body) ? body : body.models || [];
  return entries.map(modelInfo);
}

/** POST /v1/models/{name}/classify with the file's own bytes: the server decodes them. */
export async function classifyFile(modelName, file, { hopMs, topK, token }) {
  const url = endpoint(`v1/models/${encodeURIComponent(modelName)}/classify`);
  if (hopMs) url.searchParams.set("hop_ms", String(hopMs));
  if (topK) url.searchParams.set("top_k", String(topK));
  const headers = { ...authHeaders(token), "Content-Type": file.type || "application/octet-stream" };
  const body = await send(url, { method: "POST", headers, body: file });
  const summary = body.summary || {};
  return {
    labels: body.labels || [],
    modelVersion: field(body, "model_version", "modelVersion") || "",
    windows: (body.windows || []).map((window) => ({
      index: Number(window.index || 0),
      start_ms: Number(field(window, "start_ms", "startMs") || 0),
      end_ms: Number(field(window, "end_ms", "endMs") || 0),
      top_k: field(window, "top_k", "topK") || [],
      smoothed_top_k: field(window, "smoothed_top_k", "smoothedTopK") || [],
      scores: window.scores || [],
      smoothed_scores: field(window, "smoothed_scores", "smoothedScores") || window.scores || [],
      silent: Boolean(window.silent),
      low_confidence: Boolean(field(window, "low_confidence", "lowConfidence")),
    })),
    summary: {
      top_k: field(summary, "top_k", "topK") || [],
      scores: summary.scores || [],
      windows: Number(field(summary, "window_count", "windowCount", "windows") || 0),
      duration_s: Number(field(summary, "audio_duration_ms", "audioDurationMs") || 0) / 1000,
      end_reason: "COMPLETE",
      silent_windows: Number(field(summary, "silent_window_count", "silentWindowCount") || 0),
      low_confidence_windows:
        Number(field(summary, "low_confidence_window_count", "lowConfidenceWindowCount") || 0),
    },
  };
}
