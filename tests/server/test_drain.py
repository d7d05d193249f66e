"""Shutdown as clients see it: health turns NOT_SERVING at once, calls are served for
drain_delay_s, then refused UNAVAILABLE by the server (not by a closed port); Watch
streams end; open streams finish with a summary marked DRAINED, or, still open when
the grace period ends, end UNAVAILABLE ("server shutting down"), never OK."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_proto.inference import grpc_service_pb2_grpc as v2_grpc
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from mozart_server.app import CLOSING_S
from mozart_server.settings import ServerSettings
from tests.server.streams import config_message
from tests.support.audio import encode, music_clip
from tests.support.lifecycle import clip_request, health_status, rpc_error, wait_for
from tests.support.server import running_server, spawned_server

S16 = pb.AUDIO_ENCODING_PCM_S16LE
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICES = ("", "mozart.v1.AudioClassifier", "inference.GRPCInferenceService")
DRAIN_DELAY_S = 2.0
GRACE_S = 3.0
DRAINING = "draining for shutdown"


def _held_open(
    audio: bytes, release: threading.Event, hop_ms: int = 0
) -> Iterator[pb.StreamClassifyRequest]:
    yield config_message(hop_ms=hop_ms)
    yield pb.StreamClassifyRequest(audio=audio)
    release.wait(60)


@dataclass
class _Reader:
    """Reads a stream to its end in a thread: its responses, then its error (or None)."""

    call: Iterator[pb.StreamClassifyResponse]
    responses: list[pb.StreamClassifyResponse] = field(default_factory=list)
    error: grpc.RpcError | None = None
    first_window: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self.responses.append(response)
                self.first_window.set()
        except grpc.RpcError as error:
            self.error = error

    def join(self) -> None:
        self._thread.join(30)
        assert not self._thread.is_alive()


def _list_models(channel: grpc.Channel) -> None:
    pb_grpc.AudioClassifierStub(channel).ListModels(pb.ListModelsRequest(), timeout=10)


def _ready(channel: grpc.Channel) -> bool:
    stub = v2_grpc.GRPCInferenceServiceStub(channel)
    return bool(stub.ServerReady(v2.ServerReadyRequest(), timeout=10).ready)


def test_sigterm_shutdown_as_clients_see_it(model_repository) -> None:
    # Batches wait up to 1 s to fill 16 windows, so the stream with a long backlog cannot
    # finish within the grace period: it is the one that gets cut.
    flags = ("--drain-delay-s", str(DRAIN_DELAY_S), "--shutdown-grace-s", str(GRACE_S),
             "--max-queue-delay-us", "1000000", "--preferred-batch-sizes", "16")  # fmt: skip
    release = threading.Event()
    with spawned_server(model_repository, *flags) as server:
        channel = grpc.insecure_channel(server.address)
        stub = pb_grpc.AudioClassifierStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
        assert next(watch).status == SERVING
        assert _ready(channel)
        # One window of audio, then the client holds the stream open.
        drained = _Reader(
            stub.StreamClassify(
                _held_open(encode(music_clip(0.5, seed=91), 16_000, S16), release), timeout=60
            )
        )
        # 30 s of audio in one chunk: about 120 windows to work through, 8 at a time.
        backlog = _Reader(
            stub.StreamClassify(
                _held_open(encode(music_clip(30.0, seed=92), 16_000, S16), release, 250),
                timeout=60,
            )
        )
        assert drained.first_window.wait(30)
        assert backlog.first_window.wait(30)

        server.terminate()
        signalled = time.monotonic()
        # Health says NOT_SERVING within a fraction of a second...
        assert wait_for(lambda: health_status(channel) == NOT_SERVING, 1.0, every_s=0.01)
        assert time.monotonic() - signalled < DRAIN_DELAY_S / 2
        assert [health_status(channel, name) for name in SERVICES] == [NOT_SERVING] * 3
        assert health_status(channel, "liveness") == SERVING
        assert not _ready(channel)
        assert next(watch).status == NOT_SERVING
        # ...while calls are still served: a call racing the SIGTERM is answered OK.
        assert time.monotonic() - signalled < DRAIN_DELAY_S
        assert stub.ListModels(pb.ListModelsRequest(), timeout=10).models
        assert stub.Classify(clip_request(seconds=1.0), timeout=30).summary.window_count > 0

        # The grace period begins: the Watch ends, and new calls are refused by the
        # server itself, on this channel and on a new one.
        assert list(watch) == []
        assert time.monotonic() - signalled >= DRAIN_DELAY_S - 0.5
        with grpc.insecure_channel(server.address) as fresh:
            for ch in (channel, fresh):
                error = rpc_error(partial(_list_models, ch))
                assert error.code() == grpc.StatusCode.UNAVAILABLE
                assert DRAINING in (error.details() or "")
                assert health_status(ch) == NOT_SERVING
                assert not _ready(ch)
            # A Watch opened now hears NOT_SERVING and ends at once.
            late_watch = health_pb2_grpc.HealthStub(fresh).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=10
            )
            assert [r.status for r in late_watch] == [NOT_SERVING]

        # The held stream stopped reading and ended OK with a summary marked DRAINED.
        drained.join()
        assert drained.error is None
        final = drained.responses[-1]
        assert final.is_final
        assert final.end_reason == pb.STREAM_END_REASON_DRAINED
        windows = sum(r.WhichOneof("result") == "window" for r in drained.responses)
        assert final.summary.window_count == windows == 1
        # The backlog was still being worked on when the grace period ended: UNAVAILABLE.
        backlog.join()
        assert backlog.error is not None
        assert backlog.error.code() == grpc.StatusCode.UNAVAILABLE
        assert "server shutting down" in (backlog.error.details() or "")
        assert not any(r.is_final for r in backlog.responses)
        release.set()
        channel.close()
        assert server.wait(30) == 0
    messages = [entry.get("message") for entry in server.logs]
    cut = "calls still open at the end of the grace period are cut"
    for message in ("draining", "refusing new calls", cut, "stopped"):
        assert message in messages


def test_a_stream_that_completes_says_so_and_one_waiting_for_its_config_is_refused(
    model_repository,
) -> None:
    audio = encode(music_clip(1.0, seed=93), 16_000, S16)
    release = threading.Event()
    with (
        running_server(model_repository) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        messages = [config_message(), pb.StreamClassifyRequest(audio=audio)]
        complete = list(stub.StreamClassify(iter(messages), timeout=30))
        assert complete[-1].is_final
        assert complete[-1].end_reason == pb.STREAM_END_REASON_COMPLETE
        assert all(r.end_reason == pb.STREAM_END_REASON_UNSPECIFIED for r in complete[:-1])

        def no_config() -> Iterator[pb.StreamClassifyRequest]:
            release.wait(60)
            yield from ()

        waiting = _Reader(stub.StreamClassify(no_config(), timeout=60))
        assert wait_for(lambda: server.metric("mozart_active_streams") == 1)
        stopping = server.stop_in_background(grace_s=10)
        waiting.join()
        release.set()
        stopping.join(30)
        assert waiting.error is not None
        assert waiting.error.code() == grpc.StatusCode.UNAVAILABLE
        assert DRAINING in (waiting.error.details() or "")


def test_kubernetes_waits_longer_than_the_whole_shutdown() -> None:
    deployment = yaml.safe_load(
        (Path(__file__).parents[2] / "k8s" / "base" / "deployment.yaml").read_text()
    )
    kubelet_waits_s = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    process = ServerSettings().process
    # Delay, grace period, then up to CLOSING_S each for the status of cut streams, for
    # calls racing the end, and for the gRPC server's own stop.
    assert kubelet_waits_s > process.drain_delay_s + process.shutdown_grace_s + 3 * CLOSING_S


def test_sigint_skips_the_drain_delay(model_repository) -> None:
    with spawned_server(model_repository, "--drain-delay-s", "60") as server:
        with grpc.insecure_channel(server.address) as channel:
            assert health_status(channel) == SERVING
        server.process.send_signal(signal.SIGINT)
        # Ctrl-C: nothing balances load in front of this process, so it does not wait 60 s.
        assert server.wait(20) == 0
    assert "stopped" in [entry.get("message") for entry in server.logs]
