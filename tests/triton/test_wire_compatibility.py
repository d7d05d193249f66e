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
from pathlib import Path

from mozart_proto.inference import grpc_service_pb2, model_config_pb2
from tests.triton.descriptor_fields import file_fields

ROOT = Path(__file__).resolve().parents[2]

CHILD = "from tests.triton.descriptor_fields import tritonclient_fields_json as f; print(f())"


def test_v2_messages_match_tritonclient() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=120,
        cwd=ROOT,
    )  # fmt: skip
    triton = json.loads(completed.stdout)
    ours = file_fields(grpc_service_pb2.DESCRIPTOR)
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


def test_model_config_messages_are_a_subset_of_tritons() -> None:
    # Mozart declares only part of Triton's ModelConfig: every field it does declare must
    # be Triton's, or tritonclient's get_model_config would misread it.
    child = (
        "import json; from tests.triton.descriptor_fields import file_fields; "
        "from tritonclient.grpc import model_config_pb2 as m; "
        "print(json.dumps(file_fields(m.DESCRIPTOR)))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, check=True, timeout=120,
        cwd=ROOT,
    )  # fmt: skip
    triton = json.loads(completed.stdout)
    ours = file_fields(model_config_pb2.DESCRIPTOR)
    assert {"ModelConfig", "ModelInstanceGroup", "ModelDynamicBatching"} <= set(ours)
    for name, fields in ours.items():
        assert name in triton, f"{name} is not a Triton message"
        for field, shape in fields.items():
            assert triton[name].get(field) == shape, f"{name}.{field}"
