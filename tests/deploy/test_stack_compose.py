"""docker/compose.yaml and docker/Dockerfile, checked without a container engine: the
compose file against the Compose Specification's JSON schema (vendored in docker/schema),
its services' limits, health checks, volumes and mounts; the Dockerfile's targets (hadolint:
test_manifests.py); the images' health check against a real server; .env.example against the
settings it feeds."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mozart_server.settings import ServerSettings
from tests.support.server import InProcessServer

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent
SCHEMA = DOCKER / "schema" / "compose-spec.json"
SERVICES = {"server", "prometheus", "alertmanager", "grafana", "mlflow", "trainer"}
TARGETS = ("server", "server-gpu", "trainer", "dev")
GUIDE = ("APP_ENV", "LOG_LEVEL", "API_PORT", "MODEL_VERSION", "BATCH_SIZE",
         "ENABLE_MONITORING", "METRICS_ENDPOINT")  # fmt: skip


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DOCKER / "compose.yaml").read_text()))


def _check_jsonschema(document: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--schemafile", str(SCHEMA), str(document)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_compose_file_follows_the_compose_specification() -> None:
    checked = _check_jsonschema(DOCKER / "compose.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_schema_check_catches_a_misspelt_key(tmp_path: Path) -> None:
    broken = (DOCKER / "compose.yaml").read_text().replace("memory: 1G", "memroy: 1G", 1)
    (tmp_path / "compose.yaml").write_text(broken)
    checked = _check_jsonschema(tmp_path / "compose.yaml")
    assert checked.returncode != 0
    assert "memroy" in checked.stdout


def test_every_service_has_limits_a_health_check_and_named_volumes() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == SERVICES
    named = set(compose["volumes"])
    for name, service in services.items():
        limits = service["deploy"]["resources"]["limits"]
        assert {"cpus", "memory"} <= set(limits), name
        assert service["healthcheck"]["test"][0] == "CMD", name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith(("./", "../", "$")):
                if not source.startswith("$"):
                    assert (DOCKER / source).exists(), f"{name}: {source} is missing"
            else:
                assert source in named, f"{name}: {source} is not a named volume"
    assert services["trainer"]["profiles"] == ["train"]
    assert all("profiles" not in s for n, s in services.items() if n != "trainer")
    assert services["trainer"]["environment"]["MLFLOW_TRACKING_URI"].endswith("mlflow:5000}")
    assert {"mlflow-store", "mlflow-artifacts"} <= named


def test_prometheus_mounts_the_rules_its_configuration_loads() -> None:
    service = _compose()["services"]["prometheus"]
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    mounted = {volume.split(":")[1]: volume.split(":")[0] for volume in service["volumes"]}
    for rule_file in config["rule_files"]:
        assert rule_file in mounted, rule_file
        assert (DOCKER / mounted[rule_file]).is_file()
    assert mounted["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"
    alertmanager = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanager == ["alertmanager:9093"]
    server = next(job for job in config["scrape_configs"] if job["job_name"] == "mozart-server")
    assert server["static_configs"][0]["targets"] == ["server:8002"]


def _env_example() -> dict[str, str]:
    values = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def test_env_example_uses_the_guides_names_and_the_server_accepts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = _env_example()
    assert set(GUIDE) <= set(values)
    assert "MAX_SEQUENCE_LENGTH" not in values
    for name in list(os.environ):
        if name.startswith("MOZART_") or name in GUIDE:
            monkeypatch.delenv(name)
    for name, value in values.items():
        if name in GUIDE or name == "MOZART_MODEL_CONTROL_MODE":
            monkeypatch.setenv(name, value)
    settings = ServerSettings()
    assert settings.http.http_port == int(values["API_PORT"])
    assert settings.batching.max_batch_size == int(values["BATCH_SIZE"])
    assert settings.repository.readiness == "all"  # APP_ENV=production
    assert settings.repository.model_control_mode == "poll"


def _stages() -> dict[str, str]:
    """Each stage's name and its instructions."""
    text = (DOCKER / "Dockerfile").read_text()
    parts = re.split(r"^FROM \S+ AS (\S+)\n", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_dockerfile_targets_run_unprivileged_with_labels_and_health_checks() -> None:
    stages = _stages()
    assert set(TARGETS) <= set(stages)
    for target in TARGETS:
        users = re.findall(r"^USER (\S+)$", stages[target], flags=re.MULTILINE)
        assert users, target
        assert users[-1] == "10001", target
    for target in ("server", "server-gpu"):
        assert "HEALTHCHECK" in stages[target]
        assert "mozart-healthcheck" in stages[target]
        assert "BAKE_MODELS" in stages[target]
    assert "torch" not in stages["server-build"] + stages["server"]
    assert "./proto ./server" in stages["server-build"]
    assert "onnxruntime-gpu" in stages["server-gpu"]
    assert "TORCH_VARIANT" in stages["trainer"]
    for key in ("version", "revision"):
        assert f"org.opencontainers.image.{key}=" in stages["base"]
        assert f"org.opencontainers.image.{key}=" in stages["server-gpu"]
    for stage in stages.values():
        for pip in re.findall(r"pip install(?:[^\n\\]|\\\n)*", stage):
            assert "-c constraints.txt" in pip or "==" in pip, pip


def test_the_build_context_leaves_out_environments_and_data() -> None:
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") - 1].startswith("#")  # everything out, then what is in
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for path in allowed:
        assert (ROOT / path).exists(), path
    assert not allowed & {".venv", "data", "mlruns", ".git", "docker/.env"}


def _healthcheck(address: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "MOZART_HEALTHCHECK_ADDRESS": address}
    return subprocess.run([sys.executable, str(DOCKER / "healthcheck.py")], env=environment,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_the_images_health_check_asks_the_grpc_health_service(server: InProcessServer) -> None:
    answered = _healthcheck(server.address)
    assert answered.returncode == 0, answered.stderr
    assert "SERVING" in answered.stdout
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = _healthcheck(f"127.0.0.1:{port}")
    assert refused.returncode == 1
    assert "UNAVAILABLE" in refused.stderr


def test_stack_scripts_exist_and_name_the_compose_file() -> None:
    for name in ("stack-up.sh", "stack-down.sh", "stack-status.sh"):
        script = ROOT / "scripts" / name
        assert os.access(script, os.X_OK), script
        assert "docker/compose.yaml" in script.read_text() or "stack-lib.sh" in script.read_text()
    assert shutil.which("bash")
