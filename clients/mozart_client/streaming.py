"""Pieces shared by the sync and asyncio streams: the config message, pacing, latency."""

from __future__ import annotations

import threading
import time
from bisect import bisect_left

from mozart_proto.v1 import audio_classifier_pb2 as pb


def config_request(
    fmt: pb.AudioFormat,
    *,
    model: str,
    version: str,
    hop_ms: int,
    top_k: int,
    smoothing: float,
) -> pb.StreamClassifyRequest:
    """The first message of a stream: configuration only."""
    return pb.StreamClassifyRequest(
        config=pb.StreamConfig(
            model=pb.ModelRef(name=model, version=version),
            format=fmt,
            hop_ms=hop_ms,
            top_k=top_k,
            smoothing=smoothing,
        )
    )


class SendLog:
    """Remembers when each piece of audio left the client, to time the window results.

    A window's latency is the time from sending the chunk that completed the
    window (the first chunk whose audio reaches the window's end) to receiving
    the window's result. Chunks of unknown duration are not logged.
    """

    def __init__(self) -> None:
        self._audio_end_ms: list[float] = []
        self._sent_at: list[float] = []
        self._audio_ms = 0.0
        # The sync stream's requests are sent from a gRPC thread.
        self._lock = threading.Lock()

    def record(self, duration_s: float, sent_at: float) -> None:
        """Logs a chunk of `duration_s` audio sent at monotonic time `sent_at`."""
        if duration_s <= 0:
            return
        with self._lock:
            self._audio_ms += duration_s * 1000
            self._audio_end_ms.append(self._audio_ms)
            self._sent_at.append(sent_at)

    def latency_ms(self, window_end_ms: int, received_at: float) -> float | None:
        """Milliseconds from sending a window's last audio to `received_at`."""
        with self._lock:
            # Half a millisecond of slack: the server rounds window times to ms.
            index = bisect_left(self._audio_end_ms, window_end_ms - 0.5)
            if index == len(self._audio_end_ms):
                return None
            return (received_at - self._sent_at[index]) * 1000


class Pacer:
    """Holds chunks back until their audio would have been recorded live."""

    def __init__(self, realtime: bool) -> None:
        self._realtime = realtime
        self._started_at: float | None = None
        self._audio_s = 0.0

    def delay_s(self, duration_s: float) -> float:
        """Seconds to wait before sending a chunk of `duration_s` audio (0 when not paced)."""
        now = time.monotonic()
        if self._started_at is None:
            self._started_at = now
        self._audio_s += duration_s
        if not self._realtime:
            return 0.0
        return max(0.0, self._started_at + self._audio_s - now)
