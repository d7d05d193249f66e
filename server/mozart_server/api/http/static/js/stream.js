// One WebSocket stream to /v1/models/{name}/stream, as the protocol in docs/http.md says.

import { endpoint } from "./api.js";
import { CLOSE_CODES, PageError } from "./errors.js";

/** The ws:// or wss:// address of a model's stream endpoint, relative to the page. */
export function streamUrl(modelName) {
  const url = endpoint(`v1/models/${encodeURIComponent(modelName)}/stream`);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url;
}

/**
 * A stream of float32 PCM to the server, with its results given to callbacks.
 *
 * `ready` resolves with the server's "ready" message; `finished` resolves with the
 * summary once the server closes with 1000, or rejects with a PageError.
 */
export class StreamSession {
  constructor({ modelName, sampleRateHz, hopMs, topK, smoothing, token, onWindow, onNotice }) {
    this.onWindow = onWindow || (() => {});
    this.onNotice = onNotice || (() => {});
    this.summary = null;
    this.error = null;
    this.ended = false;
    this.aborted = false;
    this.socket = new WebSocket(streamUrl(modelName));
    this.socket.binaryType = "arraybuffer";
    const config = {
      format: { encoding: "pcm_f32le", sample_rate_hz: Math.round(sampleRateHz), channels: 1 },
      smoothing,
    };
    if (hopMs) config.hop_ms = hopMs;
    if (topK) config.top_k = topK;
    if (token) config.token = token;
    let opened = false;
    this.ready = new Promise((resolveReady, rejectReady) => {
      this.finished = new Promise((resolveFinished, rejectFinished) => {
        this.socket.addEventListener("open", () => {
          opened = true;
          this.socket.send(JSON.stringify(config));
        });
        this.socket.addEventListener("message", (event) => {
          if (typeof event.data !== "string") return;
          let message;
          try {
            message = JSON.parse(event.data);
          } catch {
            return;
          }
          if (message.type === "ready") resolveReady(message);
          else if (message.type === "window") this.onWindow(message);
          else if (message.type === "notice") this.onNotice(message);
          else if (message.type === "summary") this.summary = message;
          else if (message.type === "error") {
            this.error = new PageError(message.code || "INTERNAL", message.message || "");
          }
        });
        this.socket.addEventListener("close", (event) => {
          let outcome = null;
          if (this.aborted) outcome = null;
          else if (this.error) outcome = this.error;
          else if (event.code === 1000 && this.summary) outcome = null;
          else if (CLOSE_CODES[event.code]) outcome = new PageError(CLOSE_CODES[event.code], event.reason || "");
          else if (!opened) outcome = new PageError("NETWORK", "", `WebSocket closed with ${event.code}`);
          else outcome = new PageError("CONNECTION_LOST", "", `WebSocket closed with ${event.code} ${event.reason}`);
          if (outcome) {
            rejectReady(outcome);
            rejectFinished(outcome);
          } else {
            rejectReady(new PageError("CONNECTION_LOST", "", "closed before ready"));
            resolveFinished(this.summary);
          }
        });
      });
    });
    // Either promise may be awaited alone; neither should report an unhandled rejection.
    this.ready.catch(() => {});
    this.finished.catch(() => {});
  }

  /** Bytes queued in the browser and not yet sent (for pacing). */
  get bufferedBytes() {
    return this.socket.bufferedAmount;
  }

  /** Whether audio can still be sent. */
  get open() {
    return this.socket.readyState === WebSocket.OPEN && !this.ended;
  }

  /** Sends mono float32 samples (little-endian on every platform browsers run on). */
  sendSamples(samples) {
    if (!this.open || samples.length === 0) return;
    this.socket.send(samples.buffer.byteLength === samples.byteLength
      ? samples.buffer : samples.slice().buffer);
  }

  /** Says the audio is over: the server sends the rest of the windows and the summary. */
  end() {
    if (!this.open) return;
    this.ended = true;
    this.socket.send(JSON.stringify({ type: "end" }));
  }

  /** Closes at once, without a summary. */
  abort() {
    this.ended = true;
    this.aborted = true;
    if (this.socket.readyState <= WebSocket.OPEN) this.socket.close(1000, "cancelled");
  }
}
