"""Hot reload in poll mode, versions that fail to load, and readiness over several models.

Every test runs a real server on 127.0.0.1:0 on a repository in a temporary
folder and changes that folder while the server runs, the way a deployment
would: a new version copied in, a broken upload, a fix of the broken files.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
    clip_request,
    health_status,
    publish_version,
    rpc_error,
    truncate_graph,
    version_states,
    wait_for,
)
from tests.support.models import build_test_model
from tests.support.server import InProcessServer, running_server, spawned_server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
FAILED_TO_LOAD = "model version failed to load"

POLL_S = 0.2
LOAD_BUDGET_S = 5.0  # reading, checking and warming the tiny model, with room for a slow CI
STREAMS = 8
STREAM_AUDIO_S = 4.0
CHUNK_SAMPLES = 2_000  # 0.125 s of audio per message
CHUNK_PAUSE_S = 0.1  # so each stream lasts about 3 s
HOP_MS = 250
WINDOWS_PER_STREAM = int((STREAM_AUDIO_S - 0.5) * 1000 // HOP_MS) + 1


@dataclass(frozen=True)
class _Call:
    sent: float
    answered: float
    code: grpc.StatusCode
    version: str


def _paced_stream(audio: bytes) -> Iterator[pb.StreamClassifyRequest]:
    yield config_message(hop_ms=HOP_MS)
    for message in audio_messages(audio, [CHUNK_SAMPLES * 2]):
        yield message
        time.sleep(CHUNK_PAUSE_S)


class _StreamRunner(threading.Thread):
    """One StreamClassify call sending audio slowly; keeps every response."""

    def __init__(self, stub: pb_grpc.AudioClassifierStub, seed: int) -> None:
        super().__init__(daemon=True)
        self._stub = stub
        self._audio = encode(music_clip(STREAM_AUDIO_S, RATE_HZ, seed=seed), RATE_HZ, S16)
        self.first_window = threading.Event()
        self.responses: list[pb.StreamClassifyResponse] = []
        self.error: grpc.RpcError | None = None

    def run(self) -> None:
        try:
            for response in self._stub.StreamClassify(_paced_stream(self._audio), timeout=60):
                self.responses.append(response)
                if response.WhichOneof("result") == "window":
                    self.first_window.set()
        except grpc.RpcError as error:
            self.error = error
        finally:
            self.first_window.set()

    def windows(self) -> list[pb.WindowResult]:
        return [r.window for r in self.responses if r.WhichOneof("result") == "window"]


class _ClassifyLoop(threading.Thread):
    """Unary Classify calls back to back until stopped, each one timed."""

    def __init__(self, stub: pb_grpc.AudioClassifierStub) -> None:
        super().__init__(daemon=True)
        self._stub = stub
        self._request = clip_request(seconds=0.5, seed=3)
        self.stop = threading.Event()
        self.calls: list[_Call] = []

    def run(self) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                response = self._stub.Classify(self._request, timeout=CALL_TIMEOUT_S)
                code, version = grpc.StatusCode.OK, response.model_version
            except grpc.RpcError as error:
                code, version = error.code(), ""
            self.calls.append(_Call(sent, time.monotonic(), code, version))

    def first_answer_on(self, version: str) -> float | None:
        answered = [call.answered for call in self.calls if call.version == version]
        return min(answered) if answered else None


def _serving_version(stub: pb_grpc.AudioClassifierStub, name: str = "tiny") -> str:
    response: pb.ClassifyResponse = stub.Classify(
        clip_request(name, seconds=0.5), timeout=CALL_TIMEOUT_S
    )
    return response.model_version


def _listed(stub: pb_grpc.AudioClassifierStub) -> list[str]:
    response = stub.ListModels(pb.ListModelsRequest(), timeout=CALL_TIMEOUT_S)
    return [model.name for model in response.models]


def _replace_file(source_dir: Path, target_dir: Path, file_name: str) -> None:
    """Swaps one file of a version folder in a single rename (as `mv` would)."""
    os.replace(source_dir / file_name, target_dir / file_name)


def test_a_version_copied_in_serves_after_one_poll_and_streams_in_flight_finish_on_the_old(
    tmp_path: Path,
) -> None:
    repository = tmp_path / "models"
    build_test_model(repository, "tiny", "1", seed=0)
    with (
        running_server(repository, model_control_mode="poll", repository_poll_s=POLL_S) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        swaps_before = server.metric("mozart_model_swaps_total", model="tiny")
        assert server.metric("mozart_engines_open") == 1
        streams = [_StreamRunner(stub, seed=10 + i) for i in range(STREAMS)]
        for stream in streams:
            stream.start()
        load = _ClassifyLoop(stub)
        load.start()
        # A stream holds its version once its config is read: every stream has a window
        # on version 1 before version 2 appears.
        for stream in streams:
            assert stream.first_window.wait(30)
        assert server.metric("mozart_version_leases") >= STREAMS

        published = time.monotonic()
        publish_version(repository, "tiny", "2", seed=2)
        assert wait_for(lambda: load.first_answer_on("2") is not None, timeout_s=20)
        first_on_new = load.first_answer_on("2")
        assert first_on_new is not None
        time_to_serve_s = first_on_new - published
        assert time_to_serve_s < POLL_S + LOAD_BUDGET_S

        # The old version drains: the streams are still open on it, and it stays open.
        assert server.metric("mozart_active_streams") == STREAMS
        assert version_states(stub, "tiny") == {"1": ("UNLOADING", ""), "2": ("READY", "")}
        assert server.metric("mozart_engines_open") == 2

        for stream in streams:
            stream.join(60)
        load.stop.set()
        load.join(60)

        failed = [call for call in load.calls if call.code != grpc.StatusCode.OK]
        assert failed == []
        assert all(call.version == "1" for call in load.calls if call.answered < published)
        # Once a call was answered on version 2, every call sent after it goes to version 2.
        after = [call for call in load.calls if call.sent > first_on_new]
        assert after
        assert {call.version for call in after} == {"2"}
        for stream in streams:
            assert stream.error is None, stream.error
            windows = stream.windows()
            assert stream.responses[-1].is_final
            assert stream.responses[-1].summary.window_count == len(windows) == WINDOWS_PER_STREAM
            assert {window.model_version for window in windows} == {"1"}
        assert _serving_version(stub) == "2"

        assert wait_for(lambda: server.metric("mozart_engines_open") == 1)
        assert wait_for(lambda: server.metric("mozart_batchers_open") == 1)
        assert server.metric("mozart_version_leases") == 0
        assert server.metric("mozart_model_swaps_total", model="tiny") >= swaps_before + 1
        assert server.metric("mozart_model_load_failures_total") == 0
        assert server.metric("mozart_model_loaded", model="tiny", version="1") == 0
        assert server.metric("mozart_model_loaded", model="tiny", version="2") == 1
        assert version_states(stub, "tiny") == {"1": ("UNAVAILABLE", "unloaded"),
                                                "2": ("READY", "")}  # fmt: skip
        print(
            f"\nhot reload: new version served {time_to_serve_s:.3f} s after it was copied in "
            f"(poll every {POLL_S} s); Classify calls made {len(load.calls)}, "
            f"failed {len(failed)}; "
            f"streams {len(streams)}, each {WINDOWS_PER_STREAM} windows on version 1"
        )


def test_a_partly_written_version_fails_then_loads_once_its_files_change(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    build_test_model(repository, "tiny", "1", seed=0)
    complete = build_test_model(tmp_path / "upload", "tiny", "2", seed=2)
    with (
        running_server(repository, model_control_mode="poll", repository_poll_s=0.1) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        # The graph arrives first (the folder and its first file at once), the manifest later.
        partial = tmp_path / "partial" / "2"
        partial.mkdir(parents=True)
        shutil.copy(complete / "model.onnx", partial / "model.onnx")
        os.rename(partial, repository / "tiny" / "2")
        assert wait_for(lambda: version_states(stub, "tiny").get("2", ("",))[0] == "UNAVAILABLE")
        reason = version_states(stub, "tiny")["2"][1]
        assert "model.json" in reason
        assert "missing" in reason
        time.sleep(0.5)  # five polls: the unchanged folder is not tried again
        assert server.metric("mozart_model_load_failures_total", model="tiny", version="2") == 1
        assert _serving_version(stub) == "1"

        _replace_file(complete, repository / "tiny" / "2", "model.json")
        assert wait_for(lambda: _serving_version(stub) == "2")
        assert version_states(stub, "tiny")["2"] == ("READY", "")
        assert server.metric("mozart_model_load_failures_total", model="tiny", version="2") == 1


@pytest.mark.parametrize(
    ("broken", "words"),
    [("truncated", "model.onnx"), ("mislabelled", "labels")],
)
def test_a_broken_newest_version_never_replaces_the_one_that_loads(
    tmp_path: Path, broken: str, words: str
) -> None:
    repository = tmp_path / "models"
    build_test_model(repository, "tiny", "1", seed=0)
    publish_version(repository, "tiny", "2", seed=2, broken=broken)
    with spawned_server(repository, "--version-policy", "latest") as server:
        channel = grpc.insecure_channel(server.address)
        stub = pb_grpc.AudioClassifierStub(channel)
        assert health_status(channel) == SERVING
        assert _serving_version(stub) == "1"

        states = version_states(stub, "tiny")
        assert states["1"] == ("READY", "")
        state, reason = states["2"]
        assert state == "UNAVAILABLE"
        assert words in reason

        index = v2_grpc.GRPCInferenceServiceStub(channel).RepositoryIndex(
            v2.RepositoryIndexRequest(), timeout=CALL_TIMEOUT_S
        )
        entries = {(m.name, m.version): (m.state, m.reason) for m in index.models}
        assert entries[("tiny", "1")] == ("READY", "")
        assert entries[("tiny", "2")][0] == "UNAVAILABLE"
        assert words in entries[("tiny", "2")][1]

        assert server.metric("mozart_model_load_failures_total", model="tiny", version="2") == 1
        assert server.metric("mozart_model_load_failures_total", model="tiny", version="1") == 0
        assert server.metric("mozart_model_loaded", model="tiny", version="1") == 1
        assert server.metric("mozart_engines_open") == 1
        failures = [entry for entry in server.logs if entry.get("message") == FAILED_TO_LOAD]
        assert len(failures) == 1
        assert failures[0]["level"] == "ERROR"
        assert (failures[0]["model"], failures[0]["version"]) == ("tiny", "2")
        assert words in failures[0]["reason"]
        channel.close()
        server.terminate()
        assert server.wait(60) == 0


@pytest.mark.parametrize(
    ("broken", "fixed_file"),
    [("truncated", "model.onnx"), ("mislabelled", "model.json")],
)
def test_a_broken_upload_is_counted_once_and_loads_once_fixed(
    tmp_path: Path, broken: str, fixed_file: str
) -> None:
    repository = tmp_path / "models"
    build_test_model(repository, "tiny", "1", seed=0)
    with (
        running_server(repository, model_control_mode="poll", repository_poll_s=0.1) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        publish_version(repository, "tiny", "2", seed=2, broken=broken)
        assert wait_for(lambda: version_states(stub, "tiny").get("2", ("",))[0] == "UNAVAILABLE")
        time.sleep(0.6)  # six polls of the unchanged broken folder
        assert server.metric("mozart_model_load_failures_total", model="tiny", version="2") == 1
        assert version_states(stub, "tiny")["1"] == ("READY", "")
        assert _serving_version(stub) == "1"
        assert health_status(channel) == SERVING

        good = build_test_model(tmp_path / "upload", "tiny", "2", seed=2)
        _replace_file(good, repository / "tiny" / "2", fixed_file)
        assert wait_for(lambda: _serving_version(stub) == "2")
        assert version_states(stub, "tiny")["2"] == ("READY", "")
        assert server.metric("mozart_model_load_failures_total", model="tiny", version="2") == 1
        assert wait_for(lambda: server.metric("mozart_engines_open") == 1)


def _two_models_one_broken(repository: Path) -> None:
    build_test_model(repository, "tiny", "1", seed=0)
    publish_version(repository, "other", "1", seed=5, broken="truncated")


def _healthy_model_answers(server: InProcessServer, channel: grpc.Channel) -> None:
    stub = pb_grpc.AudioClassifierStub(channel)
    assert _serving_version(stub) == "1"
    assert _listed(stub) == ["tiny"]
    error = rpc_error(lambda: stub.Classify(clip_request("other"), timeout=CALL_TIMEOUT_S))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert version_states(stub, "other")["1"][0] == "UNAVAILABLE"
    assert server.metric("mozart_model_load_failures_total", model="other", version="1") == 1


def test_readiness_all_is_not_serving_while_a_model_has_no_serving_version(
    tmp_path: Path,
) -> None:
    repository = tmp_path / "models"
    _two_models_one_broken(repository)
    with (
        running_server(
            repository, readiness="all", model_control_mode="poll", repository_poll_s=0.1
        ) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        v2_stub = v2_grpc.GRPCInferenceServiceStub(channel)
        assert health_status(channel) == NOT_SERVING
        assert health_status(channel, "mozart.v1.AudioClassifier") == NOT_SERVING
        assert not v2_stub.ServerReady(v2.ServerReadyRequest(), timeout=CALL_TIMEOUT_S).ready
        _healthy_model_answers(server, channel)

        good = build_test_model(tmp_path / "upload", "other", "1", seed=5)
        _replace_file(good, repository / "other" / "1", "model.onnx")
        assert wait_for(lambda: health_status(channel) == SERVING)
        assert v2_stub.ServerReady(v2.ServerReadyRequest(), timeout=CALL_TIMEOUT_S).ready
        stub = pb_grpc.AudioClassifierStub(channel)
        assert _serving_version(stub, "other") == "1"


def test_readiness_any_is_serving_while_one_model_serves(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    _two_models_one_broken(repository)
    with (
        running_server(repository, readiness="any") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        assert health_status(channel) == SERVING
        v2_stub = v2_grpc.GRPCInferenceServiceStub(channel)
        assert v2_stub.ServerReady(v2.ServerReadyRequest(), timeout=CALL_TIMEOUT_S).ready
        _healthy_model_answers(server, channel)


def test_removed_versions_and_models_stop_serving_and_the_next_version_takes_over(
    tmp_path: Path,
) -> None:
    repository = tmp_path / "models"
    build_test_model(repository, "tiny", "1", seed=0)
    build_test_model(repository, "tiny", "2", seed=2)
    build_test_model(repository, "other", "1", seed=5)
    with (
        running_server(repository, model_control_mode="poll", repository_poll_s=0.1) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        assert _serving_version(stub) == "2"
        shutil.rmtree(repository / "tiny" / "2")
        assert wait_for(lambda: _serving_version(stub) == "1")
        assert wait_for(lambda: version_states(stub, "tiny") == {"1": ("READY", "")})

        shutil.rmtree(repository / "other")
        assert wait_for(lambda: _listed(stub) == ["tiny"])
        error = rpc_error(lambda: _serving_version(stub, "other"))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert wait_for(lambda: server.metric("mozart_engines_open") == 1)
        assert server.metric("mozart_model_loaded", model="other", version="1") == 0
        assert server.metric("mozart_model_load_failures_total") == 0


def test_overwriting_the_serving_version_reloads_it_but_a_broken_copy_never_serves(
    tmp_path: Path,
) -> None:
    repository = tmp_path / "models"
    serving = build_test_model(repository, "tiny", "1", seed=0)
    request = clip_request(seconds=1.0, seed=4)
    with (
        running_server(repository, model_control_mode="poll", repository_poll_s=0.1) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)

        def scores() -> list[float]:
            response = stub.Classify(request, timeout=CALL_TIMEOUT_S)
            return [round(score, 5) for score in response.summary.scores]

        original = scores()
        broken = build_test_model(tmp_path / "upload-broken", "tiny", "1", seed=6)
        truncate_graph(broken)
        _replace_file(broken, serving, "model.onnx")
        assert wait_for(lambda: version_states(stub, "tiny")["1"][1] != "")
        state, reason = version_states(stub, "tiny")["1"]
        assert state == "READY"
        assert "the loaded one serves" in reason
        time.sleep(0.5)  # five polls: counted once, and the loaded copy keeps answering
        assert server.metric("mozart_model_load_failures_total", model="tiny", version="1") == 1
        assert scores() == original

        retrained = build_test_model(tmp_path / "upload-good", "tiny", "1", seed=8)
        _replace_file(retrained, serving, "model.onnx")
        assert wait_for(lambda: scores() != original)
        assert version_states(stub, "tiny") == {"1": ("READY", "")}
        assert wait_for(lambda: server.metric("mozart_engines_open") == 1)
