"""Liveness answers while readiness does not: a server with no loadable model is
alive (grpc.health.v1 "liveness", v2 ServerLive) but not ready, and refuses work."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_proto.inference import grpc_service_pb2_grpc as v2_grpc
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.support.server import running_server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _health(channel: grpc.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)


def test_server_without_models_is_live_but_not_ready(tmp_path: Path) -> None:
    empty_repository = tmp_path / "models"
    empty_repository.mkdir()
    with (
        running_server(empty_repository) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        assert _health(channel, "liveness") == SERVING
        assert _health(channel, "") == NOT_SERVING
        assert _health(channel, "mozart.v1.AudioClassifier") == NOT_SERVING

        inference = v2_grpc.GRPCInferenceServiceStub(channel)
        assert inference.ServerLive(v2.ServerLiveRequest(), timeout=5).live
        assert not inference.ServerReady(v2.ServerReadyRequest(), timeout=5).ready

        classifier = pb_grpc.AudioClassifierStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            classifier.ListModels(pb.ListModelsRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "not ready" in str(refused.value.details())


def test_ready_server_reports_liveness_and_readiness(server) -> None:
    with grpc.insecure_channel(server.address) as channel:
        assert _health(channel, "liveness") == SERVING
        assert _health(channel, "mozart.v1.AudioClassifier") == SERVING
        inference = v2_grpc.GRPCInferenceServiceStub(channel)
        assert inference.ServerReady(v2.ServerReadyRequest(), timeout=5).ready
