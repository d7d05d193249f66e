"""The registry tells its listeners about every load, reload and unload, in order."""

from __future__ import annotations

from pathlib import Path

import grpc

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from mozart_server.models.registry import RegistryChange
from tests.support.models import build_test_model
from tests.support.server import running_server


def test_listeners_see_load_reload_and_unload(tmp_path: Path) -> None:
    build_test_model(tmp_path, version="1")
    changes: list[RegistryChange] = []
    with running_server(tmp_path, model_control_mode="explicit", startup_models="") as server:
        server.server.registry.add_listener(changes.append)
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.AudioClassifierStub(channel)
            stub.LoadModel(pb.LoadModelRequest(name="tiny"), timeout=60)
            stub.LoadModel(pb.LoadModelRequest(name="tiny"), timeout=60)  # unchanged: no swap
            stub.LoadModel(pb.LoadModelRequest(name="tiny", reload=True), timeout=60)
            build_test_model(tmp_path, version="2", seed=2)
            stub.LoadModel(pb.LoadModelRequest(name="tiny"), timeout=60)
            stub.UnloadModel(pb.UnloadModelRequest(name="tiny"), timeout=60)
    assert [(change.name, change.added, change.retired) for change in changes] == [
        ("tiny", ("1",), ()),
        ("tiny", ("1",), ("1",)),
        ("tiny", ("2",), ("1",)),
        ("tiny", (), ("2",)),
    ]
