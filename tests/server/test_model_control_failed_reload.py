"""A load in which no selected version loads is FAILED_PRECONDITION, even while an old copy serves.

The proto (LoadModel), docs/server.md and docs/sdk.md say a load answers
FAILED_PRECONDITION "when no selected version loaded (the versions that were
serving keep serving)": the caller learns that its load failed, and the copy
that loaded before goes on answering.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.support.lifecycle import (
    CALL_TIMEOUT_S,
    clip_request,
    rpc_error,
    truncate_graph,
    version_states,
)
from tests.support.models import build_test_model
from tests.support.server import running_server


@pytest.mark.parametrize("reload", [False, True])
def test_a_load_whose_new_copy_fails_is_failed_precondition_and_the_old_copy_serves(
    tmp_path: Path, reload: bool
) -> None:
    repository = tmp_path / "models"
    serving = build_test_model(repository, "tiny", "1", seed=0)
    with (
        running_server(repository, model_control_mode="explicit") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        truncate_graph(serving)  # the files of the serving version change, and are broken
        error = rpc_error(
            lambda: stub.LoadModel(
                pb.LoadModelRequest(name="tiny", reload=reload), timeout=CALL_TIMEOUT_S
            )
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "model.onnx" in str(error.details())
        # The copy that loaded before keeps serving, and status says why it is the old one.
        response = stub.Classify(clip_request(seconds=0.5), timeout=CALL_TIMEOUT_S)
        assert response.model_version == "1"
        state, reason = version_states(stub, "tiny")["1"]
        assert state == "READY"
        assert "the loaded one serves" in reason
        assert server.metric("mozart_model_load_failures_total", model="tiny", version="1") == 1
