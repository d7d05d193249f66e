"""Corners of the v2 protocol that tritonclient does not reach by default.

Typed `contents` instead of raw bytes, ModelStreamInfer with in-band errors,
bearer-token auth and the shared metrics, with our own stubs over a real channel.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_proto.inference import grpc_service_pb2_grpc as v2_grpc
from tests.support.audio import music_clip
from tests.support.server import InProcessServer, running_server

WINDOW = 8_000


@pytest.fixture
def stub(server: InProcessServer):
    with grpc.insecure_channel(server.address) as channel:
        yield v2_grpc.GRPCInferenceServiceStub(channel)


def _request(waveforms: np.ndarray, *, raw: bool = True, **fields) -> v2.ModelInferRequest:
    request = v2.ModelInferRequest(model_name="tiny", **fields)
    tensor = request.inputs.add(name="waveform", datatype="FP32", shape=list(waveforms.shape))
    if raw:
        request.raw_input_contents.append(waveforms.astype("<f4").tobytes())
    else:
        tensor.contents.fp32_contents.extend(waveforms.ravel().tolist())
    return request


def _probabilities(response: v2.ModelInferResponse) -> np.ndarray:
    index = [output.name for output in response.outputs].index("probabilities")
    shape = tuple(response.outputs[index].shape)
    return np.frombuffer(response.raw_output_contents[index], "<f4").reshape(shape)


def test_typed_contents_give_the_same_answer_as_raw_bytes(stub) -> None:
    windows = np.stack([music_clip(0.5, seed=s) for s in range(2)])
    raw = stub.ModelInfer(_request(windows), timeout=30)
    typed = stub.ModelInfer(_request(windows, raw=False), timeout=30)
    assert len(typed.raw_output_contents) == len(typed.outputs) == 3  # every output
    np.testing.assert_array_equal(_probabilities(raw), _probabilities(typed))


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda r: r.raw_input_contents.__setitem__(0, b"\x00" * 12), "bytes of raw data"),
        (lambda r: r.inputs[0].contents.fp32_contents.append(1.0), "not both"),
        (lambda r: r.inputs.add(name="extra", datatype="FP32", shape=[1]), "exactly one input"),
        (lambda r: setattr(r.inputs[0], "name", "audio"), "exactly one input"),
        (
            lambda r: r.raw_input_contents.__setitem__(0, np.full(WINDOW, np.nan, "<f4").tobytes()),
            "NaN",
        ),
    ],
)
def test_malformed_tensors_are_invalid_argument(stub, mutate, words) -> None:
    request = _request(np.zeros((1, WINDOW), np.float32))
    mutate(request)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in str(caught.value.details())
    assert stub.ServerReady(v2.ServerReadyRequest(), timeout=10).ready


def test_stream_infer_answers_in_order_and_reports_errors_in_band(stub) -> None:
    good = np.stack([music_clip(0.5, seed=3)])
    requests = [
        _request(good, id="a"),
        v2.ModelInferRequest(model_name="missing", id="b"),
        _request(good, id="c"),
    ]
    responses = list(stub.ModelStreamInfer(iter(requests), timeout=30))
    assert [r.infer_response.id for r in responses] == ["a", "", "c"]
    assert "not loaded" in responses[1].error_message
    np.testing.assert_array_equal(
        _probabilities(responses[0].infer_response), _probabilities(responses[2].infer_response)
    )


def test_model_infer_is_counted_in_the_shared_metrics(stub, server: InProcessServer) -> None:
    labels = {"method": "ModelInfer", "code": "OK", "model": "tiny", "version": "1"}
    before = server.metric("mozart_requests_total", **labels)
    stub.ModelInfer(_request(np.zeros((2, WINDOW), np.float32)), timeout=30)
    assert server.metric("mozart_requests_total", **labels) == before + 1


def test_v2_calls_need_the_bearer_token_when_the_server_has_one(model_repository: Path) -> None:
    with (
        running_server(model_repository, auth_token="t0ken") as secured,
        grpc.insecure_channel(secured.address) as channel,
    ):
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(_request(np.zeros((1, WINDOW), np.float32)), timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        metadata = (("authorization", "Bearer t0ken"),)
        response = stub.ModelInfer(
            _request(np.zeros((1, WINDOW), np.float32)), timeout=30, metadata=metadata
        )
        assert _probabilities(response).shape == (1, 4)


def _classify(request: v2.ModelInferRequest, name: str, **parameter) -> v2.ModelInferRequest:
    request.outputs.add(name=name).parameters["classification"].CopyFrom(
        v2.InferParameter(**parameter)
    )
    return request


def _bytes_elements(raw: bytes) -> list[bytes]:
    """BYTES contents: each element a uint32 little-endian length, then its bytes."""
    elements, offset = [], 0
    while offset < len(raw):
        length = int.from_bytes(raw[offset : offset + 4], "little")
        elements.append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return elements


def test_classification_is_a_length_prefixed_bytes_tensor(stub) -> None:
    windows = np.stack([music_clip(0.5, seed=s) for s in range(2)])
    scores = _probabilities(stub.ModelInfer(_request(windows), timeout=30))
    response = stub.ModelInfer(
        _classify(_request(windows), "probabilities", int64_param=1), timeout=30
    )
    (output,) = response.outputs
    assert (output.datatype, list(output.shape)) == ("BYTES", [2, 1])
    elements = _bytes_elements(response.raw_output_contents[0])
    labels = ["baroque", "classical", "jazz", "romantic"]
    assert elements == [
        f"{row.max():f}:{row.argmax()}:{labels[row.argmax()]}".encode() for row in scores
    ]


def test_class_count_zero_returns_the_scores(stub) -> None:
    windows = np.stack([music_clip(0.5, seed=4)])
    response = stub.ModelInfer(_classify(_request(windows), "logits", int64_param=0), timeout=30)
    assert (response.outputs[0].datatype, list(response.outputs[0].shape)) == ("FP32", [1, 4])


@pytest.mark.parametrize(
    ("parameter", "words"),
    [({"double_param": 2.0}, "must be an int64_param"), ({}, "must be an int64_param")],
)
def test_a_classification_parameter_that_is_not_an_int64_is_refused(stub, parameter, words) -> None:
    request = _classify(_request(np.zeros((1, WINDOW), np.float32)), "probabilities", **parameter)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in str(caught.value.details())


def test_a_stream_reports_an_oversized_batch_in_band_and_goes_on(stub) -> None:
    config = stub.ModelConfig(v2.ModelConfigRequest(name="tiny"), timeout=10).config
    too_many = np.zeros((config.max_batch_size + 1, WINDOW), np.float32)
    requests = [_request(too_many, id="big"), _request(too_many[:1], id="small")]
    responses = list(stub.ModelStreamInfer(iter(requests), timeout=30))
    assert f"batch-size must be <= {config.max_batch_size}" in responses[0].error_message
    assert responses[1].infer_response.id == "small"


def test_batch_stats_count_each_batch_size(model_repository: Path) -> None:
    with (
        running_server(model_repository) as fresh,
        grpc.insecure_channel(fresh.address) as channel,
    ):
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        for rows in (3, 5, 3):  # one after another: each runs as its own batch
            stub.ModelInfer(_request(np.zeros((rows, WINDOW), np.float32)), timeout=30)
        (stats,) = stub.ModelStatistics(
            v2.ModelStatisticsRequest(name="tiny"), timeout=10
        ).model_stats
    assert [(b.batch_size, b.compute_infer.count) for b in stats.batch_stats] == [(3, 2), (5, 1)]
    assert all(b.compute_infer.ns > 0 for b in stats.batch_stats)
    assert sum(b.compute_infer.ns for b in stats.batch_stats) == pytest.approx(
        stats.inference_stats.compute_infer.ns, abs=2
    )
