"""A stream whose client stops reading is ended after stream_write_timeout_s, and a
client that cancels such a stream is counted CANCELLED, not INTERNAL.

The client here never asks for a response, and its channel advertises a 1 KB HTTP/2
window (no BDP probing to grow it), so the server's writes stop after about a dozen
window results: gRPC flow control makes `context.write` wait. Each test first checks
that the stream really stalled (windows computed stop short of the clip's), then
asserts what the server does about it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.server.streams import audio_messages, config_message
from tests.support.audio import encode, music_clip
from tests.support.lifecycle import wait_for
from tests.support.server import InProcessServer, running_server

S16 = pb.AUDIO_ENCODING_PCM_S16LE
HOP_MS = 100
CLIP_S = 20.0
# Windows of the 0.5 s test model over the clip at HOP_MS: 1 + (20 - 0.5) / 0.1.
CLIP_WINDOWS = 196
STREAM_GAUGES = ("mozart_active_streams", "mozart_stream_tasks", "mozart_version_leases")
# A client that reads nothing: a 1 KB receive window that BDP probing cannot grow.
NON_READING_OPTIONS = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)]


def _held_open(audio: bytes, release: threading.Event) -> Iterator[pb.StreamClassifyRequest]:
    yield config_message(hop_ms=HOP_MS)
    yield from audio_messages(audio, [32_000])
    release.wait(60)


def _windows_computed(server: InProcessServer) -> float:
    return server.metric("mozart_batch_size_sum")


def _stalled(server: InProcessServer, before: float) -> bool:
    """Windows computed for the stream stopped growing, short of the whole clip."""
    first = _windows_computed(server) - before
    if not 0 < first < CLIP_WINDOWS:
        return False
    stable = not wait_for(lambda: _windows_computed(server) - before != first, timeout_s=0.5)
    return stable and server.metric("mozart_active_streams") == 1


def _gauges(server: InProcessServer) -> dict[str, float]:
    return {name: server.metric(name) for name in STREAM_GAUGES}


def test_a_stream_whose_client_stops_reading_ends_after_the_write_timeout(
    model_repository,
) -> None:
    audio = encode(music_clip(CLIP_S, seed=81), 16_000, S16)
    release = threading.Event()
    with (
        running_server(model_repository, stream_write_timeout_s=1.0) as server,
        grpc.insecure_channel(server.address, options=NON_READING_OPTIONS) as channel,
    ):
        before = _windows_computed(server)
        call = pb_grpc.AudioClassifierStub(channel).StreamClassify(
            _held_open(audio, release), timeout=60
        )
        try:
            # The writes block: the stream stops short of the clip and stays open...
            assert wait_for(lambda: _stalled(server, before), timeout_s=10)
            # ...until a write has waited 1 s; then its tasks, lease and gauges go.
            freed = wait_for(lambda: set(_gauges(server).values()) == {0.0}, timeout_s=10)
            assert freed, _gauges(server)
            # Reading now yields the results that were sent, then the status.
            responses = []
            try:
                responses.extend(call)
            except grpc.RpcError as error:
                status = error
            else:
                raise AssertionError("the stream ended OK")
        finally:
            release.set()
        assert status.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "stream_write_timeout_s" in (status.details() or "")
        assert not any(response.is_final for response in responses)
        assert len(responses) < CLIP_WINDOWS
        counted = {"method": "StreamClassify"}
        assert wait_for(
            lambda: (
                server.metric("mozart_requests_total", code="RESOURCE_EXHAUSTED", **counted) == 1
            )
        )
        assert server.metric("mozart_requests_total", code="INTERNAL", **counted) == 0


def test_cancelling_a_stream_whose_results_went_unread_is_counted_cancelled(
    model_repository, caplog
) -> None:
    audio = encode(music_clip(CLIP_S, seed=82), 16_000, S16)
    release = threading.Event()
    with (
        running_server(model_repository, stream_write_timeout_s=60.0) as server,
        grpc.insecure_channel(server.address, options=NON_READING_OPTIONS) as channel,
    ):
        before = _windows_computed(server)
        call = pb_grpc.AudioClassifierStub(channel).StreamClassify(
            _held_open(audio, release), timeout=60
        )
        try:
            assert wait_for(lambda: _stalled(server, before), timeout_s=10)
            call.cancel()
            assert wait_for(lambda: set(_gauges(server).values()) == {0.0}), _gauges(server)
        finally:
            release.set()
        counted = {"method": "StreamClassify"}
        assert wait_for(
            lambda: server.metric("mozart_requests_total", code="CANCELLED", **counted) == 1
        )
        assert server.metric("mozart_requests_total", code="INTERNAL", **counted) == 0
    assert not [record for record in caplog.records if record.levelname == "ERROR"]
