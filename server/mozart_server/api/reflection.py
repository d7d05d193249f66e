"""gRPC server reflection under both names clients ask for: grpc.reflection.v1 and v1alpha.

grpcio-reflection (1.81) implements only v1alpha (grpc/grpc#38576), while newer tools
try v1 first. The two protocols differ only in their package name: every message,
field name and number is the same, so one servicer answers both. The v1 file is
registered in the default descriptor pool, so reflection can describe itself as well.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha

V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"
_METHOD = "ServerReflectionInfo"


def _register_v1_file() -> None:
    """Adds grpc/reflection/v1/reflection.proto to the default pool, once."""
    pool = descriptor_pool.Default()  # type: ignore[no-untyped-call]
    try:
        pool.FindFileByName(V1_FILE)
        return  # another library registered it already
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto()
    v1alpha.DESCRIPTOR.CopyToProto(file)
    old_prefix = f".{v1alpha.DESCRIPTOR.package}."
    file.name, file.package = V1_FILE, V1_PACKAGE
    file.ClearField("options")
    for message in file.message_type:
        for field in message.field:
            if field.type_name.startswith(old_prefix):
                field.type_name = f".{V1_PACKAGE}." + field.type_name[len(old_prefix) :]
    for service in file.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old_prefix, f".{V1_PACKAGE}.")
            method.output_type = method.output_type.replace(old_prefix, f".{V1_PACKAGE}.")
    pool.AddSerializedFile(file.SerializeToString())


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serves reflection for `service_names` (and itself) as v1 and v1alpha."""
    _register_v1_file()
    # `aio` is grpcio-reflection's public asyncio servicer (its __all__); untyped there.
    servicer = reflection.aio.ReflectionServicer(  # type: ignore[attr-defined]
        (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    )
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=v1alpha.ServerReflectionRequest.FromString,
        response_serializer=v1alpha.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {_METHOD: handler}),
            grpc.method_handlers_generic_handler(V1ALPHA_SERVICE_NAME, {_METHOD: handler}),
        )
    )
