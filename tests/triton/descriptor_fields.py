"""Field tables of protobuf message descriptors, for comparing two compiled copies of a proto.

It imports nothing but protobuf, so a child process can load it next to tritonclient's
protos (which clash with Mozart's in one interpreter).
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.descriptor import Descriptor, FileDescriptor


def message_fields(message: Descriptor) -> dict[str, list[Any]]:
    """Each field (nested messages' too, as "Nested.field") -> [number, type, repeated]."""
    found: dict[str, list[Any]] = {}
    for field in message.fields:
        kind = field.message_type.full_name if field.message_type else field.type
        found[field.name] = [field.number, str(kind), field.is_repeated]
    for nested in message.nested_types:
        found.update({f"{nested.name}.{key}": value
                      for key, value in message_fields(nested).items()})  # fmt: skip
    return found


def file_fields(descriptor: FileDescriptor) -> dict[str, dict[str, list[Any]]]:
    """The field table of every top-level message of a .proto file."""
    return {name: message_fields(message)
            for name, message in descriptor.message_types_by_name.items()}  # fmt: skip


def tritonclient_fields_json() -> str:
    """tritonclient's own v2 protocol messages as JSON (run this in a child process)."""
    from tritonclient.grpc import service_pb2  # noqa: PLC0415 - only in the child process

    return json.dumps(file_fields(service_pb2.DESCRIPTOR))
