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
    assert len(typed.raw_output_contents) == len(typed.outputs) == 2
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
