"""Server reflection answers as grpc.reflection.v1 as well as v1alpha, over a real channel.

The requests are written as bytes straight from grpc/reflection/v1/reflection.proto's
field numbers (list_services = 7, file_containing_symbol = 4), so they do not lean on
the server's own descriptors; the answers are read with v1alpha's classes, whose wire
form is v1's.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from tests.support.server import InProcessServer

SERVICES = {
    "mozart.v1.AudioClassifier",
    "inference.GRPCInferenceService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}


def _string_field(number: int, value: str) -> bytes:
    encoded = value.encode()
    assert len(encoded) < 128  # one-byte length, enough here
    return bytes([number << 3 | 2, len(encoded)]) + encoded


def _ask(
    server: InProcessServer, package: str, request: bytes
) -> reflection_pb2.ServerReflectionResponse:
    with grpc.insecure_channel(server.address) as channel:
        call: Callable[..., object] = channel.stream_stream(
            f"/{package}.ServerReflection/ServerReflectionInfo",
            request_serializer=None,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        responses = list(call(iter([request]), timeout=30))  # type: ignore[call-overload]
    assert len(responses) == 1
    response: reflection_pb2.ServerReflectionResponse = responses[0]
    return response


@pytest.mark.parametrize("package", ["grpc.reflection.v1", "grpc.reflection.v1alpha"])
def test_both_reflection_versions_list_every_service(server: InProcessServer, package: str) -> None:
    response = _ask(server, package, _string_field(7, ""))
    assert response.WhichOneof("message_response") == "list_services_response"
    assert {service.name for service in response.list_services_response.service} == SERVICES


def _files(
    response: reflection_pb2.ServerReflectionResponse,
) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    assert response.WhichOneof("message_response") == "file_descriptor_response"
    files = {}
    for blob in response.file_descriptor_response.file_descriptor_proto:
        file = descriptor_pb2.FileDescriptorProto.FromString(blob)
        files[file.name] = file
    return files


def test_v1_describes_the_v2_service(server: InProcessServer) -> None:
    response = _ask(
        server, "grpc.reflection.v1", _string_field(4, "inference.GRPCInferenceService")
    )
    files = _files(response)
    (service_file,) = [
        f for f in files.values() if any(s.name == "GRPCInferenceService" for s in f.service)
    ]
    methods = {m.name for m in service_file.service[0].method}
    assert {"ModelInfer", "ModelConfig", "ModelStatistics"} <= methods


def test_v1_describes_itself_in_its_own_package(server: InProcessServer) -> None:
    response = _ask(
        server, "grpc.reflection.v1", _string_field(4, "grpc.reflection.v1.ServerReflection")
    )
    file = _files(response)["grpc/reflection/v1/reflection.proto"]
    assert file.package == "grpc.reflection.v1"
    (method,) = file.service[0].method
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"
    assert method.client_streaming
    assert method.server_streaming
    request_type = next(m for m in file.message_type if m.name == "ServerReflectionRequest")
    assert {f.name: f.number for f in request_type.field} == {
        "host": 1, "file_by_filename": 3, "file_containing_symbol": 4,
        "file_containing_extension": 5, "all_extension_numbers_of_type": 6, "list_services": 7,
    }  # fmt: skip


def test_an_unknown_symbol_is_an_in_band_not_found(server: InProcessServer) -> None:
    response = _ask(server, "grpc.reflection.v1", _string_field(4, "no.such.Service"))
    assert response.WhichOneof("message_response") == "error_response"
    assert response.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
