"""The server's log context (request id, client) and throttled warnings, on mozart_proto.logs.

Every line is written by the layout shared with the trainer and the CLI
(`mozart_proto.logs`): JSON or text, the same field names, strings clipped.
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Any

from mozart_proto import logs
from mozart_proto.logs import MAX_FIELD_CHARS, clip_text

__all__ = [
    "MAX_FIELD_CHARS",
    "ThrottledLog",
    "client_var",
    "clip_text",
    "configure_logging",
    "request_id_var",
]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mozart_request_id", default=None
)
# The authenticated client's name (named tokens only), logged with every line of its call.
client_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mozart_client", default=None
)


def configure_logging(level: str, log_format: str | None = None) -> logs.LogFormat:
    """Sends every log record to stderr at `level`, with the call's request id and client.

    `log_format` is "json" or "text"; None: text when APP_ENV=dev, else json.
    Returns the format chosen.
    """
    return logs.configure_logging(
        level, log_format, context={"request_id": request_id_var, "client": client_var}
    )


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
