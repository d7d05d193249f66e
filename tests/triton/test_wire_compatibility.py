"""Every v2 message Mozart declares has Triton's field names, numbers, types and labels.

tritonclient serializes with its own compiled copy of Triton's protos, so a field that
differs would corrupt the wire silently. Its descriptors are read in a child process
(the two copies of package `inference` cannot share one interpreter) and compared with
Mozart's, message by message, nested messages included.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

from google.protobuf.descriptor import Descriptor

from mozart_proto.inference import grpc_service_pb2

DUMP = textwrap.dedent(
    """
    import json
    from google.protobuf.descriptor import FieldDescriptor
    from tritonclient.grpc import service_pb2

    def fields(message):
        found = {}
        for field in message.fields:
            kind = field.message_type.full_name if field.message_type else field.type
            found[field.name] = [field.number, str(kind), field.is_repeated]
        for nested in message.nested_types:
            found.update({f"{nested.name}.{k}": v for k, v in fields(nested).items()})
        return found

    print(json.dumps({name: fields(message)
                      for name, message in service_pb2.DESCRIPTOR.message_types_by_name.items()}))
    """
)


def _fields(message: Descriptor) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for field in message.fields:
        kind = field.message_type.full_name if field.message_type else field.type
        found[field.name] = [field.number, str(kind), field.is_repeated]
    for nested in message.nested_types:
        found.update({f"{nested.name}.{key}": value for key, value in _fields(nested).items()})
    return found


def test_v2_messages_match_tritonclient() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", DUMP], capture_output=True, text=True, check=True, timeout=120
    )
    triton = json.loads(completed.stdout)
    ours = {
        name: _fields(message)
        for name, message in grpc_service_pb2.DESCRIPTOR.message_types_by_name.items()
    }
    assert "RepositoryModelLoadRequest" in ours
    for name, fields in ours.items():
        assert name in triton, f"{name} is not a Triton message"
        assert fields == triton[name], name


def test_v2_service_methods_are_tritons() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", "from tritonclient.grpc import service_pb2 as s; "
         "print(' '.join(m.name for m in "
         "s.DESCRIPTOR.services_by_name['GRPCInferenceService'].methods))"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    ours = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods
    assert {method.name for method in ours} <= set(completed.stdout.split())
