"""500 concurrent long clips against a small queue: quick refusals, no work for refused calls.

The server runs as its own process, so its peak memory (VmHWM) is its own. The refusal
times are printed, and bounded loosely: this is a shared 2-core machine, and the tight
figure belongs to the benchmarks. What must hold exactly is the accounting: every window
the engine ran belongs to a call that was answered OK.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import numpy as np

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.support.audio import encode, music_clip
from tests.support.lifecycle import wait_for
from tests.support.server import spawned_server

RATE = 16_000
CALLS = 500
CLIP_S = 10.0
WINDOWS_PER_CLIP = 39  # 10 s at the test model's 0.5 s window and 250 ms hop
PEAK_RSS_BOUND_MB = 1500


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_burst_of_long_clips_is_refused_fast_and_refused_calls_compute_nothing(
    model_repository: Path,
) -> None:
    audio = encode(music_clip(CLIP_S, RATE, seed=3), RATE, pb.AUDIO_ENCODING_PCM_S16LE)
    request = pb.ClassifyRequest(
        model=pb.ModelRef(name="tiny"),
        format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=RATE,
                              channels=1),
        audio=audio,
    )  # fmt: skip
    flags = ("--max-queue-windows", "64", "--max-batch-size", "4", "--preferred-batch-sizes", "4")
    with spawned_server(model_repository, *flags) as server:

        async def burst() -> list[tuple[grpc.StatusCode, float, int]]:
            async with grpc.aio.insecure_channel(
                server.address, options=[("grpc.max_send_message_length", 1 << 24)]
            ) as channel:
                stub = pb_grpc.AudioClassifierStub(channel)

                async def one() -> tuple[grpc.StatusCode, float, int]:
                    started = time.perf_counter()
                    try:
                        response = await stub.Classify(request, timeout=120)
                    except grpc.aio.AioRpcError as error:
                        return error.code(), time.perf_counter() - started, 0
                    windows = len(response.windows)
                    assert all(np.isfinite(w.scores).all() for w in response.windows)
                    return grpc.StatusCode.OK, time.perf_counter() - started, windows

                return await asyncio.gather(*(one() for _ in range(CALLS)))

        results = asyncio.run(burst())
        ok = [r for r in results if r[0] == grpc.StatusCode.OK]
        refused = [r for r in results if r[0] == grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert len(ok) + len(refused) == CALLS, {r[0] for r in results}
        assert ok
        assert refused
        assert all(windows == WINDOWS_PER_CLIP for _, _, windows in ok)
        # Every window computed belongs to an answered call: refused calls ran nothing.
        assert server.metric("mozart_batch_size_sum") == len(ok) * WINDOWS_PER_CLIP
        assert server.metric("mozart_windows_dropped_total") == 0
        # Every refusal came before decoding: an admitted call holds its room while it
        # decodes, so no call is refused after the work of decoding it.
        early = server.metric("mozart_calls_refused_early_total")
        assert early == len(refused)
        refusal_s = sorted(seconds for _, seconds, _ in refused)
        p50 = refusal_s[len(refusal_s) // 2] * 1000
        p99 = refusal_s[int(len(refusal_s) * 0.99)] * 1000
        # Server-side time of each call, from its handler's start (the message received)
        # to its answer, is printed, not asserted: on a shared machine a timed bound fails
        # for reasons of its own (39 of 500 over 50 ms once, in a full suite run). What
        # refusing early means is asserted above: refused calls decoded and computed nothing.
        # A call is recorded once its status is sent: wait until all of them are.
        assert wait_for(
            lambda: (
                server.metric("mozart_request_duration_seconds_count", method="Classify") == CALLS
            )
        )
        within_50ms = server.metric(
            "mozart_request_duration_seconds_bucket", method="Classify", le="0.05"
        )
        over_50ms = CALLS - within_50ms
        peak_mb = _peak_rss_mb(server.process.pid)
        print(
            f"\noverload: {CALLS} concurrent {CLIP_S:.0f} s clips, queue 64 windows: "
            f"{len(ok)} OK, {len(refused)} refused ({early:.0f} before decoding); "
            f"client-side refusal p50 {p50:.1f} ms, p99 {p99:.1f} ms (all {CALLS} uploads "
            f"share one connection); server-side, {over_50ms:.0f} calls took over 50 ms "
            f"({len(ok)} of them could be the OK ones); "
            f"server peak RSS {peak_mb:.0f} MB"
        )
        assert peak_mb < PEAK_RSS_BOUND_MB
        assert p99 < 5_000  # loose: a shared machine; the printed figure is the measurement
        # Still serving afterwards.
        with grpc.insecure_channel(server.address) as channel:
            again = pb_grpc.AudioClassifierStub(channel).Classify(request, timeout=60)
            assert len(again.windows) == WINDOWS_PER_CLIP
