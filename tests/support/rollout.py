"""Candidate versions that misbehave at run time, and helpers for rollout tests.

    from tests.support.rollout import build_candidate
    build_candidate(repository, "tiny", "2", nan_above=0.9)   # NaN for loud windows
    build_candidate(repository, "tiny", "2", slow_matmuls=40)  # same answers, much slower

Both load and warm like any version (warm-up audio peaks well below 0.9), and both
are the tiny test model with extra nodes whose result is multiplied by zero and added
to the probabilities: so the scores are unchanged where the extra work is finite.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import onnx
from onnx import helper, numpy_helper

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.support.audio import encode, music_clip
from tests.support.lifecycle import CALL_TIMEOUT_S, RATE_HZ, S16
from tests.support.models import build_test_graph, manifest

ROUTING_KEY = "x-mozart-routing-key"
FRAME = 400
WINDOW = 8_000


def build_candidate(
    repository: Path,
    name: str,
    version: str,
    *,
    nan_above: float | None = None,
    slow_matmuls: int = 0,
    seed: int = 0,
) -> Path:
    """Writes `repository/name/version`: the tiny model, NaN above a peak and/or slowed down."""
    graph = build_test_graph(
        window_samples=WINDOW, frame_samples=FRAME, n_labels=4, embedding_dim=8,
        task="multiclass", seed=seed,
    )  # fmt: skip
    nodes = list(graph.graph.node)
    nodes[-1].output[0] = "clean"
    extra: list[onnx.NodeProto] = []
    inits = [numpy_helper.from_array(np.zeros((1,), np.float32), "zero")]
    terms: list[str] = []
    if nan_above is not None:
        # log(limit - peak) is NaN once the window's peak passes the limit.
        inits.append(numpy_helper.from_array(np.array([nan_above], np.float32), "limit"))
        extra += [
            helper.make_node("Abs", ["waveform"], ["magnitude"]),
            helper.make_node("ReduceMax", ["magnitude"], ["peak"], axes=[1], keepdims=1),
            helper.make_node("Sub", ["limit", "peak"], ["margin"]),
            helper.make_node("Log", ["margin"], ["guard"]),
        ]
        terms.append("guard")
    if slow_matmuls:
        rng = np.random.default_rng(1)
        weights = (rng.standard_normal((FRAME, FRAME)) / np.sqrt(FRAME)).astype(np.float32)
        inits += [
            numpy_helper.from_array(weights, "busy_w"),
            numpy_helper.from_array(np.array([-1, WINDOW // FRAME, FRAME], np.int64), "busy_shape"),
            numpy_helper.from_array(np.array([-1, WINDOW], np.int64), "flat_shape"),
        ]
        extra.append(helper.make_node("Reshape", ["waveform", "busy_shape"], ["busy_0"]))
        for step in range(slow_matmuls):
            extra += [
                helper.make_node("MatMul", [f"busy_{step}", "busy_w"], [f"busy_mm_{step}"]),
                helper.make_node("Tanh", [f"busy_mm_{step}"], [f"busy_{step + 1}"]),
            ]
        extra += [
            helper.make_node("Reshape", [f"busy_{slow_matmuls}", "flat_shape"], ["busy_flat"]),
            helper.make_node("ReduceMean", ["busy_flat"], ["busy"], axes=[1], keepdims=1),
        ]
        terms.append("busy")
    total = "clean"
    for index, term in enumerate(terms):
        extra += [
            helper.make_node("Mul", [term, "zero"], [f"nothing_{index}"]),
            helper.make_node("Add", [total, f"nothing_{index}"], [f"sum_{index}"]),
        ]
        total = f"sum_{index}"
    extra.append(helper.make_node("Identity", [total], ["probabilities"]))
    del graph.graph.node[:]
    graph.graph.node.extend(nodes + extra)
    graph.graph.initializer.extend(inits)
    onnx.checker.check_model(graph)
    version_dir = repository / name / version
    version_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(version_dir / "model.onnx"))
    document = manifest(
        name, version, labels=("baroque", "classical", "jazz", "romantic"),
        sample_rate_hz=RATE_HZ, window_samples=WINDOW, default_hop_ms=250, embedding_dim=8,
        task="multiclass",
    )  # fmt: skip
    (version_dir / "model.json").write_text(json.dumps(document, indent=2))
    return version_dir


def clip(seconds: float = 0.5, *, seed: int = 0, peak: float | None = None) -> bytes:
    """Raw 16 kHz s16 PCM of a music-like clip, scaled to `peak` when given."""
    samples = music_clip(seconds, RATE_HZ, seed=seed)
    if peak is not None:
        samples = (samples / np.max(np.abs(samples)) * peak).astype(np.float32)
    return encode(samples, RATE_HZ, S16)


def classify(
    stub: pb_grpc.AudioClassifierStub,
    audio: bytes,
    *,
    name: str = "tiny",
    version: str = "",
    key: str = "",
) -> pb.ClassifyResponse:
    """One Classify call, with the rollout routing key as metadata when given."""
    request = pb.ClassifyRequest(
        model=pb.ModelRef(name=name, version=version),
        format=pb.AudioFormat(encoding=S16, sample_rate_hz=RATE_HZ, channels=1),
        audio=audio,
    )
    metadata = ((ROUTING_KEY, key),) if key else ()
    response: pb.ClassifyResponse = stub.Classify(
        request, metadata=metadata, timeout=CALL_TIMEOUT_S
    )
    return response


def set_rollout(
    stub: pb_grpc.AudioClassifierStub, name: str = "tiny", **policy: object
) -> pb.RolloutStatus:
    """SetRollout with a RolloutPolicy built from keyword arguments."""
    status: pb.RolloutStatus = stub.SetRollout(
        pb.SetRolloutRequest(name=name, policy=pb.RolloutPolicy(**policy)),  # type: ignore[arg-type]
        timeout=CALL_TIMEOUT_S,
    )
    return status


def rollout(stub: pb_grpc.AudioClassifierStub, name: str = "tiny") -> pb.RolloutStatus:
    """GetRollout of one model."""
    status: pb.RolloutStatus = stub.GetRollout(
        pb.GetRolloutRequest(name=name), timeout=CALL_TIMEOUT_S
    )
    return status


def code_of(error: grpc.RpcError) -> grpc.StatusCode:
    """The status code of a failed call."""
    code: grpc.StatusCode = error.code()
    return code
