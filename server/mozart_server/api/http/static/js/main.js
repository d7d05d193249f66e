// The live page: wires the model list, the file and microphone sources, and the result views.

import { classifyFile, listModels } from "./api.js";
import { Microphone, decodeFile, play } from "./audio.js";
import { PageError, describe } from "./errors.js";
import { ResultsView } from "./results.js";
import { StreamSession } from "./stream.js";

const $ = (id) => document.getElementById(id);
const ui = {
  model: $("model"), modelInfo: $("model-info"), tokenForm: $("token-form"), token: $("token"),
  hop: $("hop"), topK: $("top-k-count"), smoothing: $("smoothing"),
  drop: $("drop-zone"), file: $("file"), fileName: $("file-name"), playAloud: $("play-aloud"),
  classifyFile: $("classify-file"), listen: $("listen"), stop: $("stop"),
  status: $("status"), error: $("error"),
};
const results = new ResultsView({
  currentLabel: $("current-label"), currentWindow: $("current-window"), topK: $("top-k"),
  windowCount: $("window-count"), notices: $("notices"), summary: $("summary"),
  chart: $("chart"), legend: $("legend"),
});
const CHUNK_S = 0.1; // audio per WebSocket message
const MAX_BUFFERED_BYTES = 1 << 20; // "as fast as the server takes it" waits above this

const state = {
  models: [],
  token: sessionStorage.getItem("mozart-token") || "",
  file: null,
  busy: false,
  stop: null, // what the Stop button does while a stream runs
  startedFrom: null, // the control that started the run, to give focus back to
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;

function setStatus(text) {
  ui.status.textContent = text;
}

function clearError() {
  ui.error.hidden = true;
  ui.error.replaceChildren();
}

function showError(error) {
  console.error(error);
  const title = document.createElement("strong");
  title.textContent = error instanceof PageError ? error.code.replaceAll("_", " ").toLowerCase() : "error";
  const text = document.createElement("span");
  text.textContent = describe(error);
  ui.error.replaceChildren(title, text);
  ui.error.dataset.code = error instanceof PageError ? error.code : "PAGE";
  ui.error.hidden = false;
  setStatus("See the message below.");
  if (error instanceof PageError && error.code === "UNAUTHENTICATED") {
    ui.tokenForm.hidden = false;
    ui.token.focus();
  }
}

function setBusy(busy) {
  // A run disables the button that started it: keep the keyboard's place on Stop meanwhile,
  // and give it back afterwards unless something else (the token field) took it.
  const focused = document.activeElement;
  if (busy && !state.busy) state.startedFrom = focused;
  state.busy = busy;
  const ready = !busy && ui.model.value !== "";
  ui.model.disabled = busy || state.models.length === 0;
  ui.listen.disabled = !ready;
  ui.classifyFile.disabled = !ready || !state.file;
  ui.file.disabled = busy;
  ui.stop.disabled = !busy;
  if (busy && focused && focused !== document.body && focused.disabled) ui.stop.focus();
  if (!busy) {
    state.stop = null;
    const lost = [ui.stop, document.body, null].includes(document.activeElement);
    if (lost && state.startedFrom && !state.startedFrom.disabled) state.startedFrom.focus();
    state.startedFrom = null;
  }
}

function selectedModel() {
  return state.models.find((model) => model.name === ui.model.value)
    || { name: ui.model.value, labels: [], sampleRateHz: 0, windowMs: 0, defaultHopMs: 0, versions: [] };
}

function describeModel() {
  const model = selectedModel();
  if (!model.name) {
    ui.modelInfo.textContent = "";
    return;
  }
  const parts = [];
  if (model.labels.length) parts.push(`${model.labels.length} labels: ${model.labels.join(", ")}`);
  if (model.sampleRateHz) parts.push(`${model.sampleRateHz / 1000} kHz`);
  if (model.windowMs) parts.push(`${seconds(model.windowMs)} windows every ${seconds(model.defaultHopMs)} by default`);
  if (model.versions.length) parts.push(`version ${model.versions[model.versions.length - 1]}`);
  ui.modelInfo.textContent = parts.join(" · ");
  ui.hop.placeholder = model.defaultHopMs ? String(model.defaultHopMs) : "";
}

const MODEL_RETRIES = 15; // a server still loading its models is asked again, 2 s apart
const MODEL_RETRY_MS = 2000;

async function loadModels(attempt = 0) {
  clearError();
  setStatus("Loading the models…");
  ui.model.disabled = true;
  try {
    state.models = await listModels(state.token);
  } catch (error) {
    state.models = [];
    ui.model.replaceChildren(new Option("No model (see the error below)", ""));
    setBusy(false);
    showError(error instanceof PageError && error.code === "NOT_FOUND"
      ? new PageError("NO_API", "", error.message) : error);
    if (error instanceof PageError && error.code === "UNAVAILABLE" && attempt < MODEL_RETRIES) {
      setStatus(`The server is not ready yet: asking again in ${MODEL_RETRY_MS / 1000} s…`);
      setTimeout(() => loadModels(attempt + 1), MODEL_RETRY_MS);
    }
    return;
  }
  // ?model=NAME preselects a model, listed or not (the server then says whether it serves it).
  const wanted = new URLSearchParams(location.search).get("model");
  const options = state.models.map((model) => new Option(model.name, model.name));
  if (wanted && !state.models.some((model) => model.name === wanted)) {
    options.push(new Option(`${wanted} (not listed by the server)`, wanted));
  }
  ui.model.replaceChildren(...options);
  if (wanted) ui.model.value = wanted;
  describeModel();
  setBusy(false);
  if (options.length === 0) {
    showError(new PageError("NO_MODEL", ""));
  } else {
    setStatus("Ready: choose a file, or press Listen.");
  }
}

function streamSettings() {
  const hopMs = Number.parseInt(ui.hop.value, 10);
  const topK = Number.parseInt(ui.topK.value, 10);
  const smoothing = Number.parseFloat(ui.smoothing.value);
  return {
    hopMs: Number.isFinite(hopMs) && hopMs > 0 ? hopMs : 0,
    topK: Number.isFinite(topK) && topK > 0 ? topK : 3,
    smoothing: Number.isFinite(smoothing) ? Math.min(0.99, Math.max(0, smoothing)) : 0.5,
    token: state.token,
  };
}

function openSession(model, sampleRateHz) {
  return new StreamSession({
    modelName: model.name, sampleRateHz, ...streamSettings(),
    onWindow: (window) => results.addWindow(window), onNotice: (notice) => results.addNotice(notice),
  });
}

/** Sends `samples` in 100 ms chunks, at real-time pace or as fast as the socket drains. */
async function pump(session, samples, sampleRateHz, realtime, stopped) {
  const chunk = Math.max(1, Math.round(sampleRateHz * CHUNK_S));
  const started = performance.now();
  for (let i = 0, offset = 0; offset < samples.length; i += 1, offset += chunk) {
    if (realtime) {
      await sleep(started + (i + 1) * CHUNK_S * 1000 - performance.now());
    } else {
      while (session.open && session.bufferedBytes > MAX_BUFFERED_BYTES) await sleep(10);
    }
    if (stopped() || !session.open) return;
    session.sendSamples(samples.subarray(offset, offset + chunk));
    if (realtime) setStatus(`Streaming the file: ${(offset / sampleRateHz).toFixed(1)} s of ${(samples.length / sampleRateHz).toFixed(1)} s sent.`);
  }
}

async function runFile() {
  clearError();
  const model = selectedModel();
  const pace = document.querySelector("input[name=pace]:checked").value;
  if (!state.file) {
    showError(new PageError("NO_FILE", ""));
    return;
  }
  setBusy(true);
  let stopPlaying = () => {};
  let stopped = false;
  state.stop = () => {
    stopped = true;
    stopPlaying();
  };
  try {
    if (pace === "whole") {
      setStatus(`Sending ${state.file.name} to the server…`);
      const result = await classifyFile(model.name, state.file, streamSettings());
      results.reset(result.labels);
      result.windows.forEach((window) => results.addWindow(window));
      results.showSummary(result.summary);
      setStatus(`Done: ${result.windows.length} windows.`);
      return;
    }
    setStatus(`Decoding ${state.file.name}…`);
    const decoded = await decodeFile(state.file, model.sampleRateHz);
    const session = openSession(model, decoded.sampleRateHz);
    const ready = await session.ready;
    results.reset(ready.labels || model.labels);
    setStatus("Streaming the file…");
    if (pace === "realtime" && ui.playAloud.checked) {
      try {
        stopPlaying = play(decoded.buffer);
      } catch (error) {
        console.warn("cannot play the file aloud", error);
      }
    }
    await pump(session, decoded.samples, decoded.sampleRateHz, pace === "realtime", () => stopped);
    session.end();
    setStatus("Waiting for the last windows and the summary…");
    results.showSummary(await session.finished);
    setStatus(`Done: ${results.windows} windows.`);
  } catch (error) {
    showError(error);
  } finally {
    stopPlaying();
    setBusy(false);
  }
}

async function runMicrophone() {
  clearError();
  const model = selectedModel();
  setBusy(true);
  let session = null;
  let pending = [];
  let pendingLength = 0;
  let rate = 0;
  const flush = () => {
    if (!session || !session.open || pendingLength === 0) return;
    const joined = new Float32Array(pendingLength);
    let offset = 0;
    for (const block of pending) {
      joined.set(block, offset);
      offset += block.length;
    }
    pending = [];
    pendingLength = 0;
    session.sendSamples(joined);
  };
  let ready = false;
  const microphone = new Microphone((block) => {
    pending.push(block);
    pendingLength += block.length;
    if (ready && pendingLength >= rate * CHUNK_S) flush();
  });
  let stopPressed;
  const stop = new Promise((resolve) => {
    stopPressed = resolve;
  });
  state.stop = () => stopPressed();
  try {
    setStatus("Asking for the microphone…");
    rate = await microphone.start();
    session = openSession(model, rate);
    const hello = await session.ready;
    ready = true;
    results.reset(hello.labels || model.labels);
    setStatus(`Listening at ${rate / 1000} kHz: the first result comes after ${seconds(hello.window_ms)} of sound. Press Stop to end.`);
    await Promise.race([stop, session.finished.catch(() => {})]);
    await microphone.stop();
    flush();
    session.end();
    setStatus("Waiting for the last windows and the summary…");
    results.showSummary(await session.finished);
    setStatus(`Done: ${results.windows} windows.`);
  } catch (error) {
    showError(error);
  } finally {
    await microphone.stop();
    if (session && !session.ended) session.abort();
    setBusy(false);
  }
}

function chooseFile(file) {
  state.file = file || null;
  ui.fileName.textContent = file ? `${file.name} (${(file.size / 1024).toFixed(0)} KiB)` : "No file chosen.";
  setBusy(state.busy);
}

ui.model.addEventListener("change", () => {
  clearError();
  describeModel();
  setBusy(false);
});
ui.tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = ui.token.value.trim();
  sessionStorage.setItem("mozart-token", state.token);
  loadModels();
});
ui.file.addEventListener("change", () => chooseFile(ui.file.files[0]));
for (const name of ["dragenter", "dragover"]) {
  ui.drop.addEventListener(name, (event) => {
    event.preventDefault();
    ui.drop.classList.add("over");
  });
}
ui.drop.addEventListener("dragleave", () => ui.drop.classList.remove("over"));
ui.drop.addEventListener("drop", (event) => {
  event.preventDefault();
  ui.drop.classList.remove("over");
  if (!state.busy && event.dataTransfer.files.length) chooseFile(event.dataTransfer.files[0]);
});
ui.classifyFile.addEventListener("click", runFile);
ui.listen.addEventListener("click", runMicrophone);
ui.stop.addEventListener("click", () => {
  if (state.stop) state.stop();
  setStatus("Stopping…");
});

if (state.token) {
  ui.token.value = state.token;
  ui.tokenForm.hidden = false;
}
loadModels();
