// What each failure means to a person: one message per gRPC status name and browser error.

/** WebSocket close codes 4000 + gRPC status number (docs/http.md), by status name. */
export const CLOSE_CODES = {
  4003: "INVALID_ARGUMENT",
  4004: "DEADLINE_EXCEEDED",
  4005: "NOT_FOUND",
  4007: "PERMISSION_DENIED",
  4008: "RESOURCE_EXHAUSTED",
  4009: "FAILED_PRECONDITION",
  4011: "OUT_OF_RANGE",
  4013: "INTERNAL",
  4014: "UNAVAILABLE",
  4016: "UNAUTHENTICATED",
};

/** A failure shown to the user: `code` is a gRPC status name or a browser-side name. */
export class PageError extends Error {
  constructor(code, message, detail = "") {
    super(message);
    this.name = "PageError";
    this.code = code;
    this.detail = detail;
  }
}

const HINTS = {
  UNAUTHENTICATED: "This server needs an access token. Enter it in the token field and try again.",
  PERMISSION_DENIED: "The server refused this token for that model.",
  RESOURCE_EXHAUSTED: "The server is busy (too many streams or requests right now). Try again in a moment.",
  UNAVAILABLE: "The server is unavailable (starting, shutting down or overloaded). Try again in a moment.",
  NOT_FOUND: "The server does not serve that model. Choose another one from the list.",
  INVALID_ARGUMENT: "The server refused the request.",
  OUT_OF_RANGE: "The server refused the request.",
  FAILED_PRECONDITION: "The server cannot do that now.",
  DEADLINE_EXCEEDED: "The server took too long to answer.",
  INTERNAL: "The server failed on this request.",
  CONNECTION_LOST: "The connection to the server was lost before the stream finished.",
  NETWORK: "The server could not be reached.",
  MIC_DENIED: "Microphone permission was denied. Allow the microphone for this site in the browser's settings, or choose a file instead.",
  MIC_MISSING: "No microphone was found. Plug one in, or choose a file instead.",
  MIC_BUSY: "The microphone could not be opened (another program may be using it).",
  MIC_INSECURE: "The microphone needs a secure page: open this page over https, or as http://localhost on this machine.",
  MIC_UNSUPPORTED: "This browser cannot capture the microphone.",
  DECODE: "The browser could not decode this file. Try \u201cSend the whole file\u201d: the server decodes WAV, FLAC and Ogg itself.",
  NO_FILE: "Choose an audio file first.",
  NO_MODEL: "No model is loaded on this server yet.",
  NO_API: "This page found no Mozart API (GET /v1/models) on the server that sent it.",
};

/** The sentence to show for a failure: what it means, then the server's own words. */
export function describe(error) {
  if (!(error instanceof PageError)) {
    return `Something went wrong in the page: ${error && error.message ? error.message : error}`;
  }
  const hint = HINTS[error.code];
  const parts = [hint || `The request failed (${error.code}).`];
  if (error.message && error.message !== hint) {
    parts.push(`Server said: ${error.message}`);
  }
  return parts.join(" ");
}

/** A PageError from a browser getUserMedia failure. */
export function microphoneError(error) {
  const byName = {
    NotAllowedError: "MIC_DENIED",
    SecurityError: "MIC_DENIED",
    NotFoundError: "MIC_MISSING",
    OverconstrainedError: "MIC_MISSING",
    NotReadableError: "MIC_BUSY",
    AbortError: "MIC_BUSY",
  };
  const code = byName[error && error.name] || "MIC_UNSUPPORTED";
  return new PageError(code, HINTS[code], String(error && error.message ? error.message : error));
}
