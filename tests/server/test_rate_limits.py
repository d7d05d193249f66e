"""Per-client token buckets for calls and audio: the call past the burst is
RESOURCE_EXHAUSTED with retry-after-ms, and the bucket refills."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import grpc

from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_proto.inference import grpc_service_pb2_grpc as v2_grpc
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from mozart_server.api.rate_limits import TokenBuckets, client_address
from tests.server.streams import audio_messages, config_message
from tests.support.audio import encode, music_clip
from tests.support.lifecycle import clip_request, rpc_error, wait_for
from tests.support.server import running_server

S16 = pb.AUDIO_ENCODING_PCM_S16LE


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    clock = _Clock()
    buckets = TokenBuckets(rate_per_s=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == 0.5  # refused: one token in half a second
    assert buckets.take("b") == 0.0  # another client has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    # A cost beyond the burst is taken from a full bucket and leaves a debt.
    clock.now += 10
    assert buckets.take("a", cost=5.0) == 0.0
    assert buckets.take("a") == 1.5  # from -2 tokens to 1 takes 1.5 s


def test_buckets_remember_a_bounded_number_of_clients() -> None:
    buckets = TokenBuckets(rate_per_s=1.0, burst=1, max_keys=2, clock=_Clock())
    for key in ("a", "b", "c"):
        assert buckets.take(key) == 0.0
    assert buckets.take("c") > 0  # still remembered
    assert buckets.take("a") == 0.0  # forgotten, so full again


def test_clients_are_addresses_without_ports() -> None:
    assert client_address("ipv4:10.1.2.3:40000") == "ipv4:10.1.2.3"
    assert client_address("ipv6:[2001:db8:1:2:3:4:5:6]:40000") == "ipv6:2001:db8:1:2::/64"
    assert client_address("ipv6:[::1]:5") == "ipv6:::/64"
    assert client_address("unix:/tmp/socket") == "unix:/tmp/socket"


def _retry_after_ms(error: grpc.RpcError) -> int:
    trailing = cast("Sequence[tuple[str, str]]", error.trailing_metadata())
    return int(dict(trailing)["retry-after-ms"])


def test_the_call_past_the_burst_is_refused_with_retry_after_then_allowed(
    model_repository: Path,
) -> None:
    with (
        running_server(model_repository, client_requests_per_s=2, client_request_burst=3) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        for _ in range(3):
            stub.ListModels(pb.ListModelsRequest(), timeout=10)
        error = rpc_error(lambda: stub.ListModels(pb.ListModelsRequest(), timeout=10))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "client_requests_per_s" in str(error.details())
        wait_ms = _retry_after_ms(error)
        assert 0 < wait_ms <= 500
        # The v2 probes are not limited.
        v2_stub = v2_grpc.GRPCInferenceServiceStub(channel)
        assert all(v2_stub.ServerLive(v2.ServerLiveRequest()).live for _ in range(5))
        time.sleep(wait_ms / 1000)
        assert stub.ListModels(pb.ListModelsRequest(), timeout=10).models
        assert wait_for(
            lambda: (
                server.metric("mozart_rate_limited_total", limit="requests") == 1
                and server.metric("mozart_requests_total", code="RESOURCE_EXHAUSTED") == 1
            )
        )


def test_audio_per_second_is_limited_for_clips_and_streams(model_repository: Path) -> None:
    # 1 s of 16 kHz s16 is 32,000 bytes: one audio second by the server's count.
    limits = {"client_audio_s_per_s": 0.5, "client_audio_burst_s": 2.5}
    with (
        running_server(model_repository, **limits) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        for _ in range(2):
            assert stub.Classify(clip_request(seconds=1.0), timeout=10).windows
        error = rpc_error(lambda: stub.Classify(clip_request(seconds=1.0), timeout=10))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "client_audio_s_per_s" in str(error.details())
        assert _retry_after_ms(error) > 0
        time.sleep(_retry_after_ms(error) / 1000)
        assert stub.Classify(clip_request(seconds=1.0), timeout=10).windows
        # A stream is counted message by message, and ends when it goes over.
        audio = encode(music_clip(4.0, seed=7), 16_000, S16)
        messages = [config_message(), *audio_messages(audio, [8000])]
        error = rpc_error(lambda: list(stub.StreamClassify(iter(messages), timeout=10)))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _retry_after_ms(error) > 0
        assert wait_for(lambda: server.metric("mozart_rate_limited_total", limit="audio") == 2)
        assert server.metric("mozart_active_streams") == 0


def test_named_clients_have_their_own_buckets(model_repository: Path, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alice:token-a\nbob:token-b\n")
    settings = {"auth_tokens_file": tokens, "client_requests_per_s": 0.01,
                "client_request_burst": 2}  # fmt: skip
    alice, bob = (("authorization", "Bearer token-a"),), (("authorization", "Bearer token-b"),)
    with (
        running_server(model_repository, **settings) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        for _ in range(2):
            stub.ListModels(pb.ListModelsRequest(), metadata=alice, timeout=10)
        error = rpc_error(
            lambda: stub.ListModels(pb.ListModelsRequest(), metadata=alice, timeout=10)
        )
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Same address, another client: its own bucket.
        assert stub.ListModels(pb.ListModelsRequest(), metadata=bob, timeout=10).models
        assert wait_for(
            lambda: server.metric("mozart_rate_limited_total", client="alice") == 1
            and server.metric("mozart_client_requests_total", client="alice",
                              code="RESOURCE_EXHAUSTED") == 1
        )  # fmt: skip
        assert server.metric("mozart_rate_limited_total", client="bob") == 0


def test_a_client_may_hold_only_so_many_calls_open(model_repository: Path) -> None:
    # Before: nothing capped how many calls one client held open at once.
    release = threading.Event()

    def held_stream() -> Iterator[pb.StreamClassifyRequest]:
        yield config_message(hop_ms=250)
        release.wait(30)

    with (
        running_server(model_repository, client_calls_in_flight=1) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        stream = stub.StreamClassify(held_stream(), timeout=60)
        assert wait_for(lambda: server.metric("mozart_active_streams") == 1)
        refused = rpc_error(lambda: stub.ListModels(pb.ListModelsRequest(), timeout=10))
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "client_calls_in_flight" in str(refused.details())
        trailers = dict(cast(Sequence[tuple[str, str]], refused.trailing_metadata()))
        assert int(trailers["retry-after-ms"]) > 0
        assert server.metric("mozart_rate_limited_total", limit="calls_in_flight") == 1
        release.set()
        error = rpc_error(lambda: list(stream))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # a stream with no audio
        # The slot is free again once the stream ended.
        assert stub.ListModels(pb.ListModelsRequest(), timeout=10).models
