"""The log layout every program shares (mozart_proto.logs): fields, formats, the choice.

Records go through the real formatter into a string stream (the root logger of the
test process is left alone); the server's real output is in tests/server/test_logs.py.
"""

from __future__ import annotations

import io
import json
import logging
from contextvars import ContextVar
from pathlib import Path

import pytest

from mozart_proto.logs import MAX_FIELD_CHARS, LogFormat, log_formatter, resolve_format
from mozart_trainer.cli import setup_logging

REQUEST_ID: ContextVar[str | None] = ContextVar("test_request_id", default=None)


def _lines(log_format: LogFormat, emit: object) -> list[str]:
    """What `emit(logger)` writes through the shared formatter, line by line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log_formatter(log_format, context={"request_id": REQUEST_ID}))
    logger = logging.getLogger(f"mozart_tests.logs.{log_format}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    assert callable(emit)
    emit(logger)
    return stream.getvalue().splitlines()


def test_json_lines_have_the_shared_fields_in_order() -> None:
    def emit(logger: logging.Logger) -> None:
        token = REQUEST_ID.set("req-7")
        try:
            logger.warning("model %s refused", "tiny", extra={"port": 8001, "path": Path("/m")})
        finally:
            REQUEST_ID.reset(token)
        logger.info("no context")

    first, second = (json.loads(line) for line in _lines("json", emit))
    assert list(first) == ["timestamp", "level", "logger", "message", "request_id", "port", "path"]
    assert first["level"] == "WARNING"
    assert first["logger"] == "mozart_tests.logs.json"
    assert first["message"] == "model tiny refused"
    assert first["request_id"] == "req-7"
    assert first["port"] == 8001
    assert first["path"] == "/m"
    assert first["timestamp"].endswith("Z")
    assert "request_id" not in second


def test_long_strings_are_clipped_and_exceptions_logged() -> None:
    def emit(logger: logging.Logger) -> None:
        try:
            raise ValueError("bad window")
        except ValueError:
            logger.exception("x" * 5000, extra={"model": "m" * 3000})

    (line,) = _lines("json", emit)
    entry = json.loads(line)
    assert entry["message"].startswith("x" * MAX_FIELD_CHARS + "... (4000 more characters)")
    assert entry["model"] == "m" * MAX_FIELD_CHARS + "... (2000 more characters)"
    assert entry["level"] == "ERROR"
    assert "ValueError: bad window" in entry["exception"]
    assert len(line) < 3000


def test_text_is_one_readable_line_with_the_same_fields() -> None:
    def emit(logger: logging.Logger) -> None:
        token = REQUEST_ID.set("req-8")
        try:
            logger.info("server started", extra={"grpc_port": 8001})
        finally:
            REQUEST_ID.reset(token)

    (line,) = _lines("text", emit)
    assert not line.startswith("{")
    assert "[INFO" in line
    assert "server started" in line
    assert "[mozart_tests.logs.text]" in line
    assert "request_id=req-8" in line
    assert "grpc_port=8001" in line
    assert "\x1b[" not in line, "no colours outside a terminal"


@pytest.mark.parametrize(
    ("given", "environ", "chosen"),
    [
        (None, {}, "json"),
        (None, {"APP_ENV": "dev"}, "text"),
        (None, {"APP_ENV": "production"}, "json"),
        ("json", {"APP_ENV": "dev"}, "json"),
        (None, {"APP_ENV": "dev", "MOZART_LOG_FORMAT": "json"}, "json"),
        (None, {"MOZART_LOG_FORMAT": "TEXT"}, "text"),
        ("text", {"MOZART_LOG_FORMAT": "json"}, "text"),
    ],
)
def test_the_format_is_given_else_the_variable_else_app_env(
    given: str | None, environ: dict[str, str], chosen: str
) -> None:
    assert resolve_format(given, environ) == chosen


def test_a_format_that_is_neither_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"log_format must be json or text: 'xml'"):
        resolve_format("xml", {})
    with pytest.raises(ValueError, match=r"MOZART_LOG_FORMAT must be json or text: 'yaml'"):
        resolve_format(None, {"MOZART_LOG_FORMAT": "yaml"})


def test_trainer_commands_refuse_an_unknown_log_format(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MOZART_LOG_FORMAT", "xml")
    root = logging.getLogger()
    handlers = list(root.handlers)
    with pytest.raises(SystemExit) as exited:
        setup_logging()  # what every `mozart train` and `mozart data` command calls first
    assert exited.value.code == 2
    assert "mozart: MOZART_LOG_FORMAT must be json or text: 'xml'" in capsys.readouterr().err
    assert root.handlers == handlers, "nothing was configured"
