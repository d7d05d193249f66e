"""A model that returns NaN never produces an OK answer: INTERNAL, logged and counted.

The model here is built to misbehave: its scores are the square root of the window's mean
sample, so any window with a negative mean scores NaN. Every API path is checked, and the
server goes on serving windows that score finite.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_proto.inference import grpc_service_pb2_grpc as v2_grpc
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.server.streams import audio_messages, config_message
from tests.support.lifecycle import rpc_error, wait_for
from tests.support.models import manifest
from tests.support.server import running_server, spawned_server

RATE = 16_000
WINDOW = 8_000
LABELS = ("a", "b", "c")
F32 = pb.AUDIO_ENCODING_PCM_F32LE


def nan_for_negative_audio(repository: Path) -> Path:
    """Writes repository/nanny/1: probabilities = sqrt(mean(window)) for every label."""
    version_dir = repository / "nanny" / "1"
    version_dir.mkdir(parents=True)
    ones = numpy_helper.from_array(np.ones((1, len(LABELS)), np.float32), "ones")
    embed = numpy_helper.from_array(np.ones((WINDOW, 4), np.float32) / WINDOW, "embed")
    nodes = [
        helper.make_node("ReduceMean", ["waveform"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["mean", "ones"], ["spread"]),
        helper.make_node("Sqrt", ["spread"], ["probabilities"]),
        helper.make_node("Identity", ["spread"], ["logits"]),
        helper.make_node("MatMul", ["waveform", "embed"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "nan_for_negative_audio",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", WINDOW])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", width])
            for name, width in (("probabilities", 3), ("logits", 3), ("embedding", 4))
        ],
        [ones, embed],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(version_dir / "model.onnx"))
    document = manifest(
        "nanny", "1", labels=LABELS, sample_rate_hz=RATE, window_samples=WINDOW,
        default_hop_ms=250, embedding_dim=4, task="multilabel",
    )  # fmt: skip
    (version_dir / "model.json").write_text(json.dumps(document))
    return version_dir


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    repository = tmp_path_factory.mktemp("nan-models")
    nan_for_negative_audio(repository)
    # Warm-up audio has a positive mean; the model loads.
    with spawned_server(repository) as running:
        yield running


def _f32_request(samples: np.ndarray) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(
        model=pb.ModelRef(name="nanny"),
        format=pb.AudioFormat(encoding=F32, sample_rate_hz=RATE, channels=1),
        audio=samples.astype("<f4").tobytes(),
    )


def test_every_path_answers_internal_never_ok(server) -> None:
    negative = np.full(RATE, -0.25, np.float32)
    positive = np.full(RATE, 0.25, np.float32)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.AudioClassifierStub(channel)
        error = rpc_error(lambda: stub.Classify(_f32_request(negative), timeout=30))
        assert error.code() == grpc.StatusCode.INTERNAL
        assert "non-finite scores" in str(error.details())

        infer = v2_grpc.GRPCInferenceServiceStub(channel)
        request = v2.ModelInferRequest(
            model_name="nanny",
            inputs=[v2.ModelInferRequest.InferInputTensor(
                name="waveform", datatype="FP32", shape=[1, WINDOW])],
            raw_input_contents=[negative[:WINDOW].astype("<f4").tobytes()],
        )  # fmt: skip
        error = rpc_error(lambda: infer.ModelInfer(request, timeout=30))
        assert error.code() == grpc.StatusCode.INTERNAL

        messages = [config_message(encoding=F32, name="nanny"),
                    *audio_messages(negative.astype("<f4").tobytes(), [8000])]  # fmt: skip
        error = rpc_error(lambda: list(stub.StreamClassify(iter(messages), timeout=30)))
        assert error.code() == grpc.StatusCode.INTERNAL

        # The server goes on serving audio that scores finite.
        fine = stub.Classify(_f32_request(positive), timeout=30)
        assert all(np.isfinite(window.scores).all() for window in fine.windows)
    assert server.metric("mozart_nonfinite_scores_total", model="nanny", version="1") >= 3
    assert wait_for(lambda: server.metric("mozart_requests_total", code="INTERNAL") == 3)
    logged = [entry for entry in server.logs
              if entry.get("message") == "the model returned non-finite scores"]  # fmt: skip
    assert len(logged) >= 3
    assert all(entry.get("request_id") for entry in logged)


def test_v2_refuses_wild_samples_or_clips_them_by_setting(model_repository: Path) -> None:
    # Before: one sample of 1e20 in a [1, 48000] ModelInfer returned OK with NaN scores.
    window = np.zeros((1, 8000), "<f4")
    window[0, 100] = 1e20
    request = v2.ModelInferRequest(
        model_name="tiny",
        inputs=[v2.ModelInferRequest.InferInputTensor(
            name="waveform", datatype="FP32", shape=[1, 8000])],
        raw_input_contents=[window.tobytes()],
    )  # fmt: skip
    for float_samples in ("reject", "clip"):
        with (
            running_server(model_repository, float_samples=float_samples) as running,
            grpc.insecure_channel(running.address) as channel,
        ):
            stub = v2_grpc.GRPCInferenceServiceStub(channel)
            if float_samples == "reject":
                error = rpc_error(lambda: stub.ModelInfer(request, timeout=30))  # noqa: B023
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "1e+20" in str(error.details())
                continue
            response = stub.ModelInfer(request, timeout=30)
            scores = np.frombuffer(response.raw_output_contents[0], "<f4")
            assert np.isfinite(scores).all()
