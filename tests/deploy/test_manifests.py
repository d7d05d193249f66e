"""The Kubernetes manifests probe the server the way its health service answers; the
Dockerfile passes hadolint. (Rendering and validating every overlay: test_k8s_manifests.py.)

No image is built here: this machine has no container engine and cannot pull
base images, so the Dockerfile is linted, not run.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _kustomize(overlay: str) -> list[dict[str, Any]]:
    completed = subprocess.run(
        [str(BIN / "kubectl"), "kustomize", str(ROOT / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return [doc for doc in yaml.safe_load_all(completed.stdout) if doc]


def _server_container(overlay: str) -> dict[str, Any]:
    deployment = next(d for d in _kustomize(overlay) if d["kind"] == "Deployment")
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "server")


def test_probes_use_grpc_health_on_the_grpc_port() -> None:
    container = _server_container("k8s/base")
    grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
    probes = {name: container[name] for name in ("startupProbe", "readinessProbe", "livenessProbe")}
    for name, probe in probes.items():
        assert probe["grpc"]["port"] == grpc_port, name
    # Readiness follows the classifier service (NOT_SERVING while loading or
    # draining); liveness asks a separate name so a draining pod is not killed.
    assert probes["readinessProbe"]["grpc"]["service"] == "mozart.v1.AudioClassifier"
    assert probes["livenessProbe"]["grpc"]["service"] != probes["readinessProbe"]["grpc"]["service"]


def test_rollout_never_drops_below_desired_capacity() -> None:
    deployment = next(d for d in _kustomize("k8s/base") if d["kind"] == "Deployment")
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0
    pdb = next(d for d in _kustomize("k8s/base") if d["kind"] == "PodDisruptionBudget")
    selector = pdb["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()


def test_dockerfile_passes_hadolint() -> None:
    completed = subprocess.run(
        [str(BIN / "hadolint"), str(ROOT / "docker" / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def _requirement_closure(distribution: str) -> set[str]:
    """Names of every distribution that `distribution` pulls in, transitively."""
    seen: set[str] = set()
    pending = [distribution]
    while pending:
        name = canonicalize_name(pending.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return seen


def test_server_image_installs_no_torch() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "./proto ./server" in dockerfile
    closure = _requirement_closure("mozart-server")
    assert "onnxruntime" in closure
    assert not closure & {"torch", "mozart-trainer", "mlflow-skinny"}


def test_production_requires_every_model_for_readiness() -> None:
    from mozart_server.settings import ServerSettings  # noqa: PLC0415 - only this test needs it

    environment = {
        variable["name"]: variable["value"]
        for variable in _server_container("k8s/overlays/production").get("env", [])
    }
    assert environment["MOZART_READINESS"] == "all"
    # The value is one the server accepts (a typo would stop every pod at start).
    assert ServerSettings(readiness=environment["MOZART_READINESS"]).repository.readiness == "all"
    base = {v["name"] for v in _server_container("k8s/base").get("env", [])}
    assert "MOZART_READINESS" not in base
