"""One log layout for every `mozart` program: JSON lines in production, text in development.

The server, the trainer and the CLI log through the standard `logging` module (fields as
`extra=`); `configure_logging` puts one structlog `ProcessorFormatter` on the root logger,
so each line, whatever its library, carries the same fields: `timestamp` (UTC, ISO 8601),
`level`, `logger`, `message`, the context fields the program names (the server's
`request_id` and `client`), then the record's extras and `exception`.

It lives in mozart-proto because every distribution depends on it and it already holds
the `mozart` dispatcher, the runtime every command shares.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Literal, TextIO, get_args

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LogFormat = Literal["json", "text"]
LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)
# Chooses the format of any mozart program when it is given none.
FORMAT_VARIABLE = "MOZART_LOG_FORMAT"
# APP_ENV=dev (and no format given) means text.
APP_ENV_VARIABLE = "APP_ENV"

# Longest string field of a log line: clients choose model names, request ids and more,
# and one 20,000-character name must not cost 20 KB of log per call.
MAX_FIELD_CHARS = 1000

# Written first, in this order, then the context fields; the rest as the record gave them.
_LEADING_FIELDS = ("timestamp", "level", "logger", "message")
# Set on a record by formatters that ran before ours (pytest's, for one): not extras.
_FORMATTER_ATTRIBUTES = frozenset({"message", "asctime"})
# Rendered by structlog's exception and stack processors, not as values.
_TRACE_FIELDS = frozenset({"exc_info", "stack_info"})
_JSON_TYPES = (str, int, float, bool, type(None), list, tuple, dict)


def clip_text(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """`text` cut to `limit` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def resolve_format(
    log_format: str | None = None, environ: Mapping[str, str] | None = None
) -> LogFormat:
    """The format to use: `log_format` if given, else MOZART_LOG_FORMAT, else APP_ENV's.

    Raises:
        ValueError: the format (given or from MOZART_LOG_FORMAT) is neither json nor text.
    """
    env = os.environ if environ is None else environ
    source = "log_format"
    if log_format is None and env.get(FORMAT_VARIABLE):
        log_format, source = env[FORMAT_VARIABLE], FORMAT_VARIABLE
    if log_format is None:
        return "text" if env.get(APP_ENV_VARIABLE, "").lower() == "dev" else "json"
    chosen = log_format.strip().lower()
    if chosen not in LOG_FORMATS:
        raise ValueError(f"{source} must be json or text: {log_format!r}")
    return chosen


def _record_fields(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    record: logging.LogRecord = event["_record"]
    event["level"] = record.levelname
    event["logger"] = record.name
    return event


def _context_fields(variables: Mapping[str, ContextVar[str | None]]) -> Processor:
    def add(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        for name, variable in variables.items():
            value = variable.get()
            if value is not None:
                event[name] = value
        return event

    return add


def _public_fields(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Drops private attributes (`_name`) and those of other formatters; clips strings.

    Values JSON has no type for (paths, enums) become their `str`, in both formats.
    """
    fields: EventDict = {}
    for key, given in event.items():
        if key.startswith("_") or key in _FORMATTER_ATTRIBUTES:
            continue
        value = given if key in _TRACE_FIELDS or isinstance(given, _JSON_TYPES) else str(given)
        fields[key] = clip_text(value) if isinstance(value, str) else value
    return fields


def _fields_in_order(leading: tuple[str, ...]) -> Processor:
    def order(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
        ordered = {key: event.pop(key) for key in leading if key in event}
        ordered.update(event)
        return ordered

    return order


def log_formatter(
    log_format: LogFormat,
    *,
    context: Mapping[str, ContextVar[str | None]] | None = None,
    colors: bool = False,
) -> logging.Formatter:
    """A `logging.Formatter` that writes records in `log_format` with Mozart's fields.

    Args:
        log_format: "json" (one object a line) or "text" (aligned, key=value fields).
        context: field name -> context variable, logged with every record while set
            (the server's request id).
        colors: ANSI colours in text (only for a terminal).
    """
    context = context or {}
    renderer: Processor
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer(default=str)
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors,
            event_key="message",
            exception_formatter=structlog.dev.plain_traceback,
            sort_keys=False,
        )
    return structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ExtraAdder(),
            _record_fields,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _context_fields(context),
            _public_fields,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            structlog.processors.EventRenamer("message"),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            _fields_in_order((*_LEADING_FIELDS, *context)),
            renderer,
        ],
    )


def configure_logging(
    level: str | int = "INFO",
    log_format: str | None = None,
    *,
    context: Mapping[str, ContextVar[str | None]] | None = None,
    stream: TextIO | None = None,
) -> LogFormat:
    """Sends every log record to `stream` (stderr) at `level` and above, in one format.

    The root logger gets a single handler; libraries' loggers reach it too. `log_format`
    None means MOZART_LOG_FORMAT, else text when APP_ENV=dev, else json. Text has colours
    when the stream is a terminal and NO_COLOR is not set. Returns the format chosen.

    Raises:
        ValueError: the format is neither json nor text.
    """
    chosen = resolve_format(log_format)
    out = sys.stderr if stream is None else stream
    colors = chosen == "text" and out.isatty() and not os.environ.get("NO_COLOR")
    handler = logging.StreamHandler(out)
    handler.setFormatter(log_formatter(chosen, context=context, colors=colors))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return chosen
