"""Structured JSON logs with the request id of the call being served."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mozart_request_id", default=None
)
# The authenticated client's name (named tokens only), logged with every line of its call.
client_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mozart_client", default=None
)

# Longest string field of a log line: clients choose model names, request ids and more,
# and one 20,000-character name must not cost 20 KB of log per call.
MAX_FIELD_CHARS = 1000


def clip_text(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """`text` cut to `limit` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


# Attributes every LogRecord has; anything else came from `extra=` and is logged as a field.
_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """Returns the record as a JSON line with time, level, logger, message and extras."""
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": clip_text(record.getMessage()),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        client = client_var.get()
        if client is not None:
            entry["client"] = client
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = clip_text(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    """Sends every log record to stderr as JSON lines at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class ThrottledLog:
    """Emits at most one record per `interval_s`; the next one counts those held back.

    For events a hostile client can cause at any rate (failed authentication, rate
    limits): the log stays bounded, and `suppressed` says how many were not written.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 1.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last = -float("inf")
        self._suppressed = 0

    def warning(self, message: str, **fields: Any) -> None:
        """Logs `message` at WARNING with `fields`, unless one was logged too recently."""
        now = time.monotonic()
        if now - self._last < self._interval_s:
            self._suppressed += 1
            return
        self._last = now
        fields["suppressed"], self._suppressed = self._suppressed, 0
        self._logger.warning(message, extra=fields)
