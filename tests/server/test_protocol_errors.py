"""Bytes that are not the protobuf message a method takes are INVALID_ARGUMENT, and counted.

Each call sends raw bytes over a real channel (no client-side serializer), as a hostile
or broken client would.
"""

from __future__ import annotations

import grpc
import pytest

from mozart_proto.v1 import audio_classifier_pb2 as pb
from tests.server.streams import config_message
from tests.support.lifecycle import rpc_error, wait_for
from tests.support.server import InProcessServer, running_server

V1 = "/mozart.v1.AudioClassifier"
V2 = "/inference.GRPCInferenceService"
# A varint that never ends; a length-delimited field 2 whose length runs past the end.
GARBAGE = b"\xff" * 11
TRUNCATED_FIELD = b"\x12\xff\xff\xff\xff\x0f"


def _unary(channel: grpc.Channel, method: str):
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


def _streaming(channel: grpc.Channel, method: str):
    return channel.stream_stream(method, request_serializer=None, response_deserializer=None)


def _code_of(call) -> tuple[grpc.StatusCode, str]:
    error = rpc_error(call)
    return error.code(), str(error.details())


@pytest.mark.parametrize(
    ("method", "message_name"),
    [
        (f"{V1}/Classify", "mozart.v1.ClassifyRequest"),
        (f"{V1}/GetModel", "mozart.v1.GetModelRequest"),
        (f"{V2}/ModelInfer", "inference.ModelInferRequest"),
        (f"{V2}/ModelMetadata", "inference.ModelMetadataRequest"),
    ],
)
def test_unary_garbage_is_invalid_argument_and_counted(
    server: InProcessServer, method: str, message_name: str
) -> None:
    short = method.rsplit("/", 1)[-1]
    before = server.metric("mozart_requests_total", method=short, code="INVALID_ARGUMENT")
    with grpc.insecure_channel(server.address) as channel:
        for body in (GARBAGE, TRUNCATED_FIELD):
            code, details = _code_of(lambda b=body: _unary(channel, method)(b, timeout=10))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert details == f"the request is not a valid {message_name} message"
    # The answer can reach us a moment before the server has counted it.
    assert wait_for(
        lambda: (
            server.metric("mozart_requests_total", method=short, code="INVALID_ARGUMENT")
            == before + 2
        )
    )
    assert server.metric("mozart_requests_total", code="UNKNOWN") == 0
    assert server.metric("mozart_requests_total", code="INTERNAL") == 0


def test_a_stream_whose_first_or_later_message_is_garbage_is_invalid_argument(
    server: InProcessServer,
) -> None:
    config = config_message().SerializeToString()
    with grpc.insecure_channel(server.address) as channel:
        stream = _streaming(channel, f"{V1}/StreamClassify")
        for messages in ([TRUNCATED_FIELD], [GARBAGE], [config, TRUNCATED_FIELD]):
            code, details = _code_of(lambda m=messages: list(stream(iter(m), timeout=10)))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (messages, details)
            assert details == "the request is not a valid mozart.v1.StreamClassifyRequest message"
        infer_stream = _streaming(channel, f"{V2}/ModelStreamInfer")
        code, details = _code_of(lambda: list(infer_stream(iter([GARBAGE]), timeout=10)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details == "the request is not a valid inference.ModelInferRequest message"
        # The server goes on serving.
        assert _unary(channel, f"{V1}/ListModels")(
            pb.ListModelsRequest().SerializeToString(), timeout=10
        )
    assert wait_for(
        lambda: server.metric("mozart_requests_total", method="StreamClassify",
                              code="INVALID_ARGUMENT") >= 3
        and server.metric("mozart_requests_total", method="ModelStreamInfer",
                          code="INVALID_ARGUMENT") >= 1
    )  # fmt: skip
    assert server.metric("mozart_requests_total", code="INTERNAL") == 0


def test_without_the_token_garbage_is_refused_before_it_is_parsed(model_repository) -> None:
    with (
        running_server(model_repository, auth_token="s3cret") as secured,
        grpc.insecure_channel(secured.address) as channel,
    ):
        code, _ = _code_of(lambda: _unary(channel, f"{V1}/Classify")(GARBAGE, timeout=10))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        stream = _streaming(channel, f"{V1}/StreamClassify")
        code, _ = _code_of(lambda: list(stream(iter([TRUNCATED_FIELD]), timeout=10)))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert wait_for(
            lambda: secured.metric("mozart_requests_total", code="UNAUTHENTICATED") == 2
        )
        # With the token, the same bytes are parsed, and refused for what they are.
        token = (("authorization", "Bearer s3cret"),)
        code, _ = _code_of(
            lambda: _unary(channel, f"{V1}/Classify")(GARBAGE, metadata=token, timeout=10)
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
