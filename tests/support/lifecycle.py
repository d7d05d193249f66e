"""Helpers for model-lifecycle tests: change a repository on disk, wait, and read states.

    from tests.support.lifecycle import publish_version, wait_for
    publish_version(repository, "tiny", "2", seed=2)   # appears all at once
    assert wait_for(lambda: classify(stub).model_version == "2", timeout_s=10)

`publish_version` builds the version beside the repository and renames it into
place, so a polling server never sees half of it; `truncate_graph` and
`mislabel` turn a good version folder into one that must fail to load.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.support.audio import encode, music_clip
from tests.support.models import build_test_model

S16 = pb.AUDIO_ENCODING_PCM_S16LE
RATE_HZ = 16_000
WINDOW_SAMPLES = 8_000  # the tiny test model: 0.5 s at 16 kHz
CALL_TIMEOUT_S = 30.0

STATE_NAMES = {
    pb.VERSION_STATE_UNSPECIFIED: "UNSPECIFIED",
    pb.VERSION_STATE_LOADING: "LOADING",
    pb.VERSION_STATE_READY: "READY",
    pb.VERSION_STATE_UNLOADING: "UNLOADING",
    pb.VERSION_STATE_UNAVAILABLE: "UNAVAILABLE",
}


def wait_for(condition: Callable[[], bool], timeout_s: float = 15.0, every_s: float = 0.05) -> bool:
    """Polls `condition` until it holds or `timeout_s` passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every_s)
    return condition()


def publish_version(repository: Path, name: str, version: str, **model: Any) -> Path:
    """Builds `name/version` in a folder beside `repository`, then renames it into place.

    The rename is atomic on one file system, so a server polling the repository sees
    either no such version or all of its files. Keyword arguments go to build_test_model;
    `broken` ("truncated" or "mislabelled") breaks the version before it appears.
    """
    broken = model.pop("broken", None)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=repository.parent))
    try:
        built = build_test_model(staging, name, version, **model)
        if broken == "truncated":
            truncate_graph(built)
        elif broken == "mislabelled":
            mislabel(built)
        elif broken is not None:
            raise ValueError(f"unknown kind of broken version: {broken!r}")
        target = repository / name / version
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(built, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def truncate_graph(version_dir: Path, keep_bytes: int = 64) -> None:
    """Cuts model.onnx short, as an interrupted upload would leave it."""
    graph = version_dir / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:keep_bytes])


def mislabel(version_dir: Path) -> None:
    """Adds a label to model.json, so the manifest disagrees with the graph's output width."""
    manifest_path = version_dir / "model.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["labels"] = [*manifest["labels"], "polka"]
    manifest_path.write_text(json.dumps(manifest, indent=2))


def clip_request(name: str = "tiny", seconds: float = 1.0, seed: int = 0) -> pb.ClassifyRequest:
    """A Classify request of raw 16 kHz PCM for `name` (newest version)."""
    return pb.ClassifyRequest(
        model=pb.ModelRef(name=name),
        format=pb.AudioFormat(encoding=S16, sample_rate_hz=RATE_HZ, channels=1),
        audio=encode(music_clip(seconds, RATE_HZ, seed=seed), RATE_HZ, S16),
    )


def infer_request(name: str = "tiny", rows: int = 1, seed: int = 0) -> v2.ModelInferRequest:
    """A v2 ModelInfer request of `rows` windows for `name`, as raw FP32 bytes."""
    windows = np.stack([music_clip(0.5, RATE_HZ, seed=seed + row) for row in range(rows)])
    request = v2.ModelInferRequest(model_name=name)
    request.inputs.add(name="waveform", datatype="FP32", shape=list(windows.shape))
    request.raw_input_contents.append(windows.astype("<f4").tobytes())
    return request


def version_states(
    stub: pb_grpc.AudioClassifierStub, name: str, metadata: Any = ()
) -> dict[str, tuple[str, str]]:
    """ListModelStatus of one model as {version: (state name, reason)}; {} if unknown."""
    response = stub.ListModelStatus(
        pb.ListModelStatusRequest(), metadata=metadata, timeout=CALL_TIMEOUT_S
    )
    for model in response.models:
        if model.name == name:
            return {v.version: (STATE_NAMES[v.state], v.reason) for v in model.versions}
    return {}


def health_status(channel: grpc.Channel, service: str = "") -> int:
    """grpc.health.v1 Check of `service` ("" is the whole server)."""
    response = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT_S
    )
    return int(response.status)


def status_code(call: Callable[[], object]) -> grpc.StatusCode:
    """Runs a gRPC call and returns its status code (OK when it answered)."""
    try:
        call()
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    """Runs a gRPC call that must fail and returns its error."""
    try:
        call()
    except grpc.RpcError as error:
        return error
    raise AssertionError("the call succeeded; it should have failed")
