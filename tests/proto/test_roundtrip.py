"""Every message of both APIs survives encode -> decode with every field set."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory
from google.protobuf.message import Message

from mozart_proto.inference import grpc_service_pb2, model_config_pb2
from mozart_proto.v1 import audio_classifier_pb2

FieldDescriptor = pb_descriptor.FieldDescriptor
MODULES = [audio_classifier_pb2, grpc_service_pb2, model_config_pb2]


def _all_message_classes() -> list[type[Message]]:
    classes: list[type[Message]] = []
    for module in MODULES:
        pending = list(module.DESCRIPTOR.message_types_by_name.values())
        while pending:
            descriptor = pending.pop()
            if not descriptor.GetOptions().map_entry:
                classes.append(message_factory.GetMessageClass(descriptor))
            pending.extend(descriptor.nested_types)
    return classes


def _scalar_for(field: Any, salt: int) -> object:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return f"{field.name}-{salt}"
    if kind == FieldDescriptor.TYPE_BYTES:
        return bytes([salt % 256, 0, 255, 7])
    if kind == FieldDescriptor.TYPE_BOOL:
        return True
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return 0.5 + salt
    if kind == FieldDescriptor.TYPE_ENUM:
        values = field.enum_type.values
        return values[-1].number
    return salt + 1  # every integer type


def _fill(message: Message, depth: int = 0) -> None:
    """Sets every field (one branch of each oneof) to a non-default value."""
    seen_oneofs: set[str] = set()
    fields: list[Any] = list(message.DESCRIPTOR.fields)
    for salt, field in enumerate(fields):
        if field.containing_oneof is not None:
            if field.containing_oneof.name in seen_oneofs:
                continue
            seen_oneofs.add(field.containing_oneof.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field, value_field = field.message_type.fields
            key = _scalar_for(key_field, salt)
            container = getattr(message, field.name)
            if value_field.message_type is not None:
                if depth < 3:
                    _fill(container[key], depth + 1)
            else:
                container[key] = _scalar_for(value_field, salt)
            continue
        if field.message_type is not None:
            if depth >= 3:
                continue
            if field.is_repeated:
                _fill(getattr(message, field.name).add(), depth + 1)
            else:
                child = getattr(message, field.name)
                _fill(child, depth + 1)
                child.SetInParent()
            continue
        value = _scalar_for(field, salt)
        if field.is_repeated:
            getattr(message, field.name).extend([value, value])
        else:
            setattr(message, field.name, value)


@pytest.mark.parametrize(
    "message_class", _all_message_classes(), ids=lambda c: c.DESCRIPTOR.full_name
)
def test_message_roundtrips(message_class: type[Message]) -> None:
    original = message_class()
    _fill(original)
    decoded = message_class.FromString(original.SerializeToString())
    assert decoded == original
    if original.DESCRIPTOR.fields:
        assert decoded.ByteSize() > 0


def test_stream_request_carries_config_or_audio_never_both() -> None:
    request = audio_classifier_pb2.StreamClassifyRequest(
        config=audio_classifier_pb2.StreamConfig(hop_ms=500)
    )
    request.audio = b"\x00\x01"
    assert request.WhichOneof("request") == "audio"
    assert not request.HasField("config")


def test_both_services_are_declared() -> None:
    native = audio_classifier_pb2.DESCRIPTOR.services_by_name["AudioClassifier"]
    assert [m.name for m in native.methods] == [
        "Classify",
        "StreamClassify",
        "ListModels",
        "GetModel",
        "ListModelStatus",
        "LoadModel",
        "UnloadModel",
        "GetRollout",
        "SetRollout",
    ]
    v2 = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "ModelConfig",
        "ModelStatistics",
        "RepositoryIndex",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
    } <= {m.name for m in v2.methods}
