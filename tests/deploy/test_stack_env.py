"""The DevOps guide's environment names (docker/.env.example) as aliases of MOZART_*
settings: each one sets what docker/README.md says, a MOZART_* variable wins, and a value
that cannot mean what the guide says stops `mozart serve` with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from mozart_server.settings import ServerSettings

GUIDE = ("APP_ENV", "LOG_LEVEL", "API_PORT", "MODEL_VERSION", "BATCH_SIZE",
         "ENABLE_MONITORING", "METRICS_ENDPOINT", "MAX_SEQUENCE_LENGTH")  # fmt: skip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MOZART_") or name in GUIDE:
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("variable", "value", "read", "expected"),
    [
        ("LOG_LEVEL", "debug", lambda s: s.process.log_level, "DEBUG"),
        ("API_PORT", "8100", lambda s: s.http.http_port, 8100),
        ("BATCH_SIZE", "32", lambda s: s.batching.max_batch_size, 32),
        ("MODEL_VERSION", "latest", lambda s: s.repository.version_policy, "latest"),
        ("MODEL_VERSION", "3", lambda s: (s.repository.version_policy,
                                          s.repository.specific_versions), ("specific", ["3"])),
        ("APP_ENV", "production", lambda s: s.repository.readiness, "all"),
        ("APP_ENV", "staging", lambda s: s.repository.readiness, "any"),
        ("APP_ENV", "dev", lambda s: s.repository.readiness, "any"),
        ("ENABLE_MONITORING", "true", lambda s: s.network.metrics_port, 8002),
        ("METRICS_ENDPOINT", "/metrics", lambda s: s.network.metrics_port, 8002),
        ("MAX_SEQUENCE_LENGTH", "512", lambda s: s.batching.max_batch_size, 16),
    ],
)  # fmt: skip
def test_each_guide_name_sets_its_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, read, expected
) -> None:
    # Without the variable the setting differs, except where the alias keeps the default.
    keeps_default = (variable, value) in {("MODEL_VERSION", "latest"), ("APP_ENV", "staging"),
                                          ("APP_ENV", "dev")} or variable in (
        "ENABLE_MONITORING", "METRICS_ENDPOINT", "MAX_SEQUENCE_LENGTH")  # fmt: skip
    assert (read(ServerSettings()) == expected) == keeps_default
    monkeypatch.setenv(variable, value)
    assert read(ServerSettings()) == expected


@pytest.mark.parametrize(
    ("variable", "value", "mozart", "read", "expected"),
    [
        ("LOG_LEVEL", "debug", {"MOZART_LOG_LEVEL": "ERROR"}, lambda s: s.process.log_level,
         "ERROR"),
        ("API_PORT", "8100", {"MOZART_HTTP_PORT": "8200"}, lambda s: s.http.http_port, 8200),
        ("BATCH_SIZE", "32", {"MOZART_MAX_BATCH_SIZE": "64"},
         lambda s: s.batching.max_batch_size, 64),
        ("MODEL_VERSION", "3", {"MOZART_VERSION_POLICY": "all"},
         lambda s: (s.repository.version_policy, s.repository.specific_versions), ("all", [])),
        ("APP_ENV", "production", {"MOZART_READINESS": "any"},
         lambda s: s.repository.readiness, "any"),
    ],
)  # fmt: skip
def test_a_mozart_variable_wins(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, mozart: dict[str, str], read,
    expected,
) -> None:  # fmt: skip
    monkeypatch.setenv(variable, value)
    for name, setting in mozart.items():
        monkeypatch.setenv(name, setting)
    assert read(ServerSettings()) == expected


def test_an_alias_counts_as_the_environment_in_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServerSettings().sources()["max_batch_size"] == "default"
    monkeypatch.setenv("BATCH_SIZE", "32")
    assert ServerSettings().sources()["max_batch_size"] == "env"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("APP_ENV", "prod", "APP_ENV must be dev, staging or production"),
        ("ENABLE_MONITORING", "false", "always serves Prometheus metrics"),
        ("ENABLE_MONITORING", "maybe", "ENABLE_MONITORING must be true"),
        ("METRICS_ENDPOINT", "/stats", "serves its metrics at /metrics"),
        ("BATCH_SIZE", "0", "greater than or equal to 1"),
        ("LOG_LEVEL", "chatty", "log_level must be"),
    ],
)
def test_a_value_that_means_nothing_is_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=message):
        ServerSettings()


def test_mozart_serve_names_the_guide_variable_it_refuses() -> None:
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("MOZART_") and name not in GUIDE}  # fmt: skip
    environment["ENABLE_MONITORING"] = "false"
    completed = subprocess.run(
        [sys.executable, "-m", "mozart_server", "--port", "0", "--metrics-port", "0"],
        env=environment, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 2, completed.stderr
    assert "invalid setting ENABLE_MONITORING: the server always serves Prometheus metrics" in (
        completed.stderr
    )
