"""Disconnects leave nothing behind; SIGTERM drains; auth; start-up settings errors."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.server.streams import audio_messages, config_message
from tests.support.audio import encode, music_clip
from tests.support.server import running_server, spawned_server

S16 = pb.AUDIO_ENCODING_PCM_S16LE
LEAK_GAUGES = ("mozart_active_streams", "mozart_stream_tasks", "mozart_queue_depth",
               "mozart_batches_in_flight")  # fmt: skip


def wait_for(condition, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def held_open_stream(audio: bytes, release: threading.Event) -> Iterator[pb.StreamClassifyRequest]:
    yield config_message(hop_ms=100)
    yield from audio_messages(audio, [6000])
    release.wait(60)


def test_abrupt_disconnects_leave_no_streams_tasks_or_queue_entries(model_repository) -> None:
    # A slow-ish batcher (one window per batch) so disconnects hit windows still queued.
    with running_server(
        model_repository, max_batch_size=1, preferred_batch_sizes="1",
        max_windows_in_flight_per_stream=4,
    ) as server:  # fmt: skip
        audio = encode(music_clip(3.0, seed=21), 16_000, S16)
        release = threading.Event()
        channels = [grpc.insecure_channel(server.address) for _ in range(24)]
        calls = []
        for i, channel in enumerate(channels):
            stub = pb_grpc.AudioClassifierStub(channel)
            # Half the streams send everything, half stop after the config.
            chunk = audio if i % 2 else b""
            calls.append(stub.StreamClassify(held_open_stream(chunk, release), timeout=60))
        assert wait_for(lambda: server.metric("mozart_active_streams") == 24)
        during = {name: server.metric(name) for name in LEAK_GAUGES}
        for i, call in enumerate(calls):
            if i % 2 and i % 3 == 0:
                next(call)  # a window arrives, then the client vanishes
            call.cancel() if i % 2 else channels[i].close()
        release.set()
        assert wait_for(lambda: all(server.metric(name) == 0 for name in LEAK_GAUGES)), {
            name: server.metric(name) for name in LEAK_GAUGES
        }
        after = {name: server.metric(name) for name in LEAK_GAUGES}
        assert during["mozart_active_streams"] == 24
        assert during["mozart_stream_tasks"] > 0
        assert after == dict.fromkeys(LEAK_GAUGES, 0.0)
        assert server.metric("mozart_requests_total", code="CANCELLED") == 24
        for channel in channels:
            channel.close()
        # The server still serves after all of that.
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.AudioClassifierStub(channel)
            messages = [config_message(), *audio_messages(audio, [8000])]
            responses = list(stub.StreamClassify(iter(messages), timeout=60))
            assert responses[-1].is_final


def test_sigterm_drains_then_exits_zero(model_repository: Path) -> None:
    audio = encode(music_clip(2.0, seed=22), 16_000, S16)
    # A drain delay, so that the port is still open (answering UNAVAILABLE) when the
    # ListModels below races the end of shutdown.
    with spawned_server(
        model_repository, "--drain-delay-s", "1", "--shutdown-grace-s", "20"
    ) as server:
        channel = grpc.insecure_channel(server.address)
        stub = pb_grpc.AudioClassifierStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service="mozart.v1.AudioClassifier"))
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        release = threading.Event()
        stream = stub.StreamClassify(held_open_stream(audio, release), timeout=60)
        first = next(stream)
        assert first.WhichOneof("result") == "window"

        server.terminate()
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        rest = list(stream)  # the open stream gets its windows and a final summary
        assert rest[-1].is_final
        windows = 1 + sum(r.WhichOneof("result") == "window" for r in rest)
        # Windows in flight finish; audio the server had not read yet is not waited for.
        assert rest[-1].summary.window_count == windows
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListModels(pb.ListModelsRequest(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        release.set()
        watch.cancel()
        channel.close()
        assert server.wait(60) == 0
    messages = [entry.get("message") for entry in server.logs]
    assert "draining" in messages
    assert "stopped" in messages


def test_bearer_token_is_required_when_set(model_repository) -> None:
    with (
        running_server(model_repository, auth_token="s3cret") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        for metadata, expected in [
            ((), grpc.StatusCode.UNAUTHENTICATED),
            ((("authorization", "Bearer nope"),), grpc.StatusCode.UNAUTHENTICATED),
        ]:
            with pytest.raises(grpc.RpcError) as caught:
                stub.ListModels(pb.ListModelsRequest(), metadata=metadata, timeout=10)
            assert caught.value.code() == expected
        ok = stub.ListModels(pb.ListModelsRequest(), metadata=(("authorization", "Bearer s3cret"),))
        assert ok.models[0].name == "tiny"
        # Health stays open for probes.
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest()).status == 1


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--max-batch-size", "0"], "max_batch_size"),
        (["--preferred-batch-sizes", "64"], "preferred_batch_sizes"),
        (["--port", "99999"], "port"),
        (["--version-policy", "newest"], "version_policy"),
    ],
)
def test_invalid_settings_are_named_at_start_up(flags, needle, model_repository) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "mozart_server", "--model-repository", str(model_repository),
         *flags],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "mozart serve: invalid setting" in completed.stderr
    assert needle in completed.stderr
