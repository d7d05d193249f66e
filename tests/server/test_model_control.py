"""Model control over mozart.v1 (LoadModel, UnloadModel, ListModelStatus) and its v2 twins.

Explicit mode loads, reloads and unloads on request, and every change drains:
what is in flight finishes on the version it began on. In none and poll mode
the calls answer FAILED_PRECONDITION; with a bearer token they need it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_proto.inference import grpc_service_pb2_grpc as v2_grpc
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.server.streams import audio_messages, config_message
from tests.support.audio import encode, music_clip
from tests.support.lifecycle import (
    CALL_TIMEOUT_S,
    RATE_HZ,
    S16,
    STATE_NAMES,
    clip_request,
    health_status,
    publish_version,
    rpc_error,
    status_code,
    version_states,
    wait_for,
)
from tests.support.models import build_test_model
from tests.support.server import InProcessServer, running_server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HOP_MS = 250
TOKEN = "s3cret"
WITH_TOKEN = (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """tiny/1 and other/1 (other with other weights and labels)."""
    models = tmp_path / "models"
    build_test_model(models, "tiny", "1", seed=0)
    build_test_model(models, "other", "1", seed=7, labels=("blues", "rock", "pop"))
    return models


def _states(status: pb.ModelStatus) -> dict[str, tuple[str, str]]:
    return {v.version: (STATE_NAMES[v.state], v.reason) for v in status.versions}


def _load(stub: pb_grpc.AudioClassifierStub, name: str, reload: bool = False) -> pb.ModelStatus:
    status: pb.ModelStatus = stub.LoadModel(
        pb.LoadModelRequest(name=name, reload=reload), timeout=CALL_TIMEOUT_S
    )
    return status


def _unload(stub: pb_grpc.AudioClassifierStub, name: str) -> pb.ModelStatus:
    status: pb.ModelStatus = stub.UnloadModel(
        pb.UnloadModelRequest(name=name), timeout=CALL_TIMEOUT_S
    )
    return status


def _classify(stub: pb_grpc.AudioClassifierStub, name: str = "tiny") -> pb.ClassifyResponse:
    response: pb.ClassifyResponse = stub.Classify(
        clip_request(name, seconds=0.5), timeout=CALL_TIMEOUT_S
    )
    return response


def _listed(stub: pb_grpc.AudioClassifierStub) -> list[str]:
    response = stub.ListModels(pb.ListModelsRequest(), timeout=CALL_TIMEOUT_S)
    return [model.name for model in response.models]


def _settled(server: InProcessServer, engines: int) -> bool:
    return (
        server.metric("mozart_engines_open") == engines
        and server.metric("mozart_batchers_open") == engines
        and server.metric("mozart_version_leases") == 0
    )


class _HeldStream:
    """A stream that sends 1 s of audio, waits for `release`, then sends 1 s more."""

    WINDOWS = 7  # 2 s of audio, 0.5 s windows every 0.25 s

    def __init__(self, stub: pb_grpc.AudioClassifierStub, name: str = "tiny") -> None:
        audio = encode(music_clip(2.0, RATE_HZ, seed=9), RATE_HZ, S16)
        self._halves = (audio[: len(audio) // 2], audio[len(audio) // 2 :])
        self._stub = stub
        self._name = name
        self.release = threading.Event()
        self.first_window = threading.Event()
        self.responses: list[pb.StreamClassifyResponse] = []
        self.error: grpc.RpcError | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.first_window.wait(30), "the stream got no window"

    def _messages(self) -> Iterator[pb.StreamClassifyRequest]:
        yield config_message(name=self._name, hop_ms=HOP_MS)
        yield from audio_messages(self._halves[0], [8_000])
        self.release.wait(30)
        yield from audio_messages(self._halves[1], [8_000])

    def _run(self) -> None:
        try:
            for response in self._stub.StreamClassify(self._messages(), timeout=60):
                self.responses.append(response)
                self.first_window.set()
        except grpc.RpcError as error:
            self.error = error
        finally:
            self.first_window.set()

    def finish(self) -> list[pb.WindowResult]:
        """Sends the rest, waits for the end; returns the windows of a stream that ended well."""
        self.release.set()
        self._thread.join(60)
        assert self.error is None, self.error
        assert self.responses[-1].is_final
        windows = [r.window for r in self.responses if r.WhichOneof("result") == "window"]
        assert self.responses[-1].summary.window_count == len(windows) == self.WINDOWS
        return windows


def test_load_reload_and_unload_in_explicit_mode(repository: Path) -> None:
    with (
        running_server(repository, model_control_mode="explicit") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        assert _listed(stub) == ["other", "tiny"]  # startup_models defaults to every model
        assert _settled(server, engines=2)

        # Loading a model that serves and has not changed changes nothing.
        swaps = server.metric("mozart_model_swaps_total", model="tiny")
        assert _states(_load(stub, "tiny")) == {"1": ("READY", "")}
        assert server.metric("mozart_model_swaps_total", model="tiny") == swaps

        # reload=True loads the same version again and swaps the new copy in.
        assert _states(_load(stub, "tiny", reload=True)) == {"1": ("READY", "")}
        assert server.metric("mozart_model_swaps_total", model="tiny") == swaps + 1
        assert _classify(stub).model_version == "1"
        assert wait_for(lambda: _settled(server, engines=2))
        assert server.metric("mozart_model_loaded", model="tiny", version="1") == 1

        # Unload: the model goes, the other one keeps serving.
        assert _states(_unload(stub, "other"))["1"][0] in {"UNLOADING", "UNAVAILABLE"}
        assert wait_for(lambda: _settled(server, engines=1))
        assert version_states(stub, "other") == {"1": ("UNAVAILABLE", "unloaded")}
        assert _listed(stub) == ["tiny"]
        error = rpc_error(lambda: _classify(stub, "other"))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert "not loaded" in str(error.details())
        assert server.metric("mozart_model_loaded", model="other", version="1") == 0
        assert _classify(stub).model_version == "1"
        error = rpc_error(lambda: _unload(stub, "other"))
        assert error.code() == grpc.StatusCode.NOT_FOUND

        # And back.
        assert _states(_load(stub, "other")) == {"1": ("READY", "")}
        assert _classify(stub, "other").labels == ["blues", "rock", "pop"]
        assert wait_for(lambda: _settled(server, engines=2))
        assert server.metric("mozart_model_load_failures_total") == 0


def test_unload_lets_a_stream_in_flight_finish_on_its_version(repository: Path) -> None:
    with (
        running_server(repository, model_control_mode="explicit") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        stream = _HeldStream(stub)
        assert _states(_unload(stub, "tiny")) == {"1": ("UNLOADING", "")}
        error = rpc_error(lambda: _classify(stub))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        # The unloaded version stays open while the stream holds it.
        assert server.metric("mozart_engines_open") == 2
        assert server.metric("mozart_version_leases") == 1

        windows = stream.finish()
        assert {window.model_version for window in windows} == {"1"}
        assert wait_for(lambda: _settled(server, engines=1))
        assert version_states(stub, "tiny") == {"1": ("UNAVAILABLE", "unloaded")}
        assert server.metric("mozart_active_streams") == 0
        assert server.metric("mozart_stream_tasks") == 0


def test_load_swaps_in_a_new_version_while_a_stream_finishes_on_the_old(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    build_test_model(repository, "tiny", "1", seed=0)
    with (
        running_server(repository, model_control_mode="explicit") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        stream = _HeldStream(stub)
        publish_version(repository, "tiny", "2", seed=2)
        assert _classify(stub).model_version == "1"  # explicit mode waits to be told
        assert _states(_load(stub, "tiny")) == {"1": ("UNLOADING", ""), "2": ("READY", "")}
        assert _classify(stub).model_version == "2"
        assert server.metric("mozart_engines_open") == 2
        # A version asked for by number that no longer serves is NOT_FOUND, even while draining.
        pinned = clip_request(seconds=0.5)
        pinned.model.version = "1"
        error = rpc_error(lambda: stub.Classify(pinned, timeout=CALL_TIMEOUT_S))
        assert error.code() == grpc.StatusCode.NOT_FOUND

        windows = stream.finish()
        assert {window.model_version for window in windows} == {"1"}
        assert wait_for(lambda: _settled(server, engines=1))
        assert version_states(stub, "tiny") == {"1": ("UNAVAILABLE", "unloaded"),
                                                "2": ("READY", "")}  # fmt: skip


@pytest.mark.parametrize("mode", ["none", "poll"])
def test_model_control_is_failed_precondition_outside_explicit_mode(
    repository: Path, mode: str
) -> None:
    with (
        running_server(repository, model_control_mode=mode) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        v2_stub = v2_grpc.GRPCInferenceServiceStub(channel)
        calls = {
            "LoadModel": lambda: _load(stub, "tiny"),
            "LoadModel(reload)": lambda: _load(stub, "tiny", reload=True),
            "UnloadModel": lambda: _unload(stub, "tiny"),
            "RepositoryModelLoad": lambda: v2_stub.RepositoryModelLoad(
                v2.RepositoryModelLoadRequest(model_name="tiny"), timeout=CALL_TIMEOUT_S
            ),
            "RepositoryModelUnload": lambda: v2_stub.RepositoryModelUnload(
                v2.RepositoryModelUnloadRequest(model_name="tiny"), timeout=CALL_TIMEOUT_S
            ),
        }
        for method, call in calls.items():
            error = rpc_error(call)
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, method
            assert "model_control_mode" in str(error.details()), method
            assert repr(mode) in str(error.details()), method
        # Nothing changed, and status still answers.
        assert version_states(stub, "tiny") == {"1": ("READY", "")}
        assert _classify(stub).model_version == "1"
        assert server.metric("mozart_model_swaps_total", model="tiny") == 1  # the start-up load


def test_unknown_models_are_not_found(repository: Path) -> None:
    with (
        running_server(repository, model_control_mode="explicit") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        v2_stub = v2_grpc.GRPCInferenceServiceStub(channel)
        calls = [
            lambda: _load(stub, "nope"),
            lambda: _unload(stub, "nope"),
            lambda: v2_stub.RepositoryModelLoad(
                v2.RepositoryModelLoadRequest(model_name="nope"), timeout=CALL_TIMEOUT_S
            ),
            lambda: v2_stub.RepositoryModelUnload(
                v2.RepositoryModelUnloadRequest(model_name="nope"), timeout=CALL_TIMEOUT_S
            ),
        ]
        for call in calls:
            error = rpc_error(call)
            assert error.code() == grpc.StatusCode.NOT_FOUND
            assert "'nope'" in str(error.details())
        load_error = rpc_error(calls[0])
        assert "tiny" in str(load_error.details())  # it names what the repository has
        assert _listed(stub) == ["other", "tiny"]
        assert server.metric("mozart_model_load_failures_total") == 0


def test_load_of_a_model_whose_only_version_is_broken_is_failed_precondition(
    repository: Path,
) -> None:
    publish_version(repository, "broken", "1", seed=3, broken="truncated")
    with (
        running_server(repository, model_control_mode="explicit", startup_models="tiny") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        error = rpc_error(lambda: _load(stub, "broken"))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no version of model 'broken' loaded" in str(error.details())
        assert "version 1: " in str(error.details())
        state, reason = version_states(stub, "broken")["1"]
        assert state == "UNAVAILABLE"
        assert "model.onnx" in reason
        assert server.metric("mozart_model_load_failures_total", model="broken", version="1") == 1
        assert _listed(stub) == ["tiny"]
        assert _classify(stub).model_version == "1"
        assert wait_for(lambda: _settled(server, engines=1))


def test_model_control_needs_the_bearer_token(repository: Path) -> None:
    with (
        running_server(repository, model_control_mode="explicit", auth_token=TOKEN) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        v2_stub = v2_grpc.GRPCInferenceServiceStub(channel)

        def calls(metadata: tuple[tuple[str, str], ...]) -> dict[str, Callable[[], object]]:
            return {
                "ListModelStatus": lambda: stub.ListModelStatus(
                    pb.ListModelStatusRequest(), metadata=metadata, timeout=CALL_TIMEOUT_S
                ),
                "UnloadModel": lambda: stub.UnloadModel(
                    pb.UnloadModelRequest(name="tiny"), metadata=metadata, timeout=CALL_TIMEOUT_S
                ),
                "LoadModel": lambda: stub.LoadModel(
                    pb.LoadModelRequest(name="tiny"), metadata=metadata, timeout=CALL_TIMEOUT_S
                ),
                "RepositoryIndex": lambda: v2_stub.RepositoryIndex(
                    v2.RepositoryIndexRequest(), metadata=metadata, timeout=CALL_TIMEOUT_S
                ),
                "RepositoryModelUnload": lambda: v2_stub.RepositoryModelUnload(
                    v2.RepositoryModelUnloadRequest(model_name="other"),
                    metadata=metadata,
                    timeout=CALL_TIMEOUT_S,
                ),
                "RepositoryModelLoad": lambda: v2_stub.RepositoryModelLoad(
                    v2.RepositoryModelLoadRequest(model_name="other"),
                    metadata=metadata,
                    timeout=CALL_TIMEOUT_S,
                ),
            }

        for metadata in [(), (("authorization", "Bearer nope"),)]:
            for method, call in calls(metadata).items():
                assert status_code(call) == grpc.StatusCode.UNAUTHENTICATED, method
        # The refused unloads did nothing.
        assert server.metric("mozart_model_swaps_total") == 2  # the start-up loads
        assert version_states(stub, "tiny", WITH_TOKEN) == {"1": ("READY", "")}
        for method, call in calls(WITH_TOKEN).items():
            assert status_code(call) == grpc.StatusCode.OK, method
        assert server.metric("mozart_model_swaps_total") == 6  # two unloads, two loads more
        assert wait_for(lambda: _settled(server, engines=2))


def test_startup_models_empty_starts_with_nothing_loaded(repository: Path) -> None:
    with (
        running_server(repository, model_control_mode="explicit", startup_models="") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        v2_stub = v2_grpc.GRPCInferenceServiceStub(channel)
        assert server.metric("mozart_engines_open") == 0
        for call in (lambda: _listed(stub), lambda: _classify(stub)):
            error = rpc_error(call)
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert "not ready" in str(error.details())
        assert health_status(channel) == NOT_SERVING
        assert not v2_stub.ServerReady(v2.ServerReadyRequest(), timeout=CALL_TIMEOUT_S).ready

        # Model control answers: it is how this server gets its first model.
        listed = stub.ListModelStatus(pb.ListModelStatusRequest(), timeout=CALL_TIMEOUT_S)
        assert {model.name: len(model.versions) for model in listed.models} == {
            "other": 0,
            "tiny": 0,
        }
        index = v2_stub.RepositoryIndex(v2.RepositoryIndexRequest(), timeout=CALL_TIMEOUT_S)
        assert {(m.name, m.state, m.reason) for m in index.models} == {
            ("other", "UNAVAILABLE", "not loaded"),
            ("tiny", "UNAVAILABLE", "not loaded"),
        }
        assert _states(_load(stub, "tiny")) == {"1": ("READY", "")}
        assert _listed(stub) == ["tiny"]
        assert _classify(stub).model_version == "1"
        assert health_status(channel) == SERVING

        # Unloading the last model makes the server not ready again.
        _unload(stub, "tiny")
        assert status_code(lambda: _listed(stub)) == grpc.StatusCode.UNAVAILABLE
        assert health_status(channel) == NOT_SERVING
        assert wait_for(lambda: _settled(server, engines=0))


def test_startup_models_named_loads_only_those(repository: Path) -> None:
    with (
        running_server(repository, model_control_mode="explicit", startup_models="other") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        assert _listed(stub) == ["other"]
        assert status_code(lambda: _classify(stub)) == grpc.StatusCode.NOT_FOUND
        assert version_states(stub, "tiny") == {}
        assert server.metric("mozart_engines_open") == 1
        _load(stub, "tiny")
        assert _classify(stub).model_version == "1"
