"""Pieces shared by the sync and asyncio streams: settings, the config message, pacing,
latency and the reading of responses."""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from dataclasses import dataclass

from mozart_client._calls import check_window_options
from mozart_client._conversion import stream_result_from_proto
from mozart_client.connection import ConnectionOptions, new_request_id
from mozart_client.errors import InvalidInputError
from mozart_client.results import StreamResult
from mozart_proto.v1 import audio_classifier_pb2 as pb


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


@dataclass(frozen=True)
class StreamOptions:
    """A stream's settings, checked when `stream()` is called.

    Attributes:
        model: The model asked for ("" for the server's only one).
        timeout_s: The whole stream's deadline; None for none.
        metadata: Request id, and the bearer token when there is one.
    """

    model: str
    version: str
    hop_ms: int
    top_k: int
    smoothing: float
    include_embedding: bool
    realtime: bool
    resample_on_client: bool
    timeout_s: float | None
    request_id: str
    metadata: tuple[tuple[str, str], ...]

    def config(self, fmt: pb.AudioFormat, model: str) -> pb.StreamClassifyRequest:
        """The first message of the stream, once the model's name is known."""
        return pb.StreamClassifyRequest(
            config=pb.StreamConfig(
                model=pb.ModelRef(name=model, version=self.version),
                format=fmt,
                hop_ms=self.hop_ms,
                top_k=self.top_k,
                smoothing=self.smoothing,
                include_embedding=self.include_embedding,
            )
        )


def stream_options(
    connection: ConnectionOptions,
    *,
    model: str,
    version: str,
    hop_ms: int,
    top_k: int,
    smoothing: float,
    include_embedding: bool,
    realtime: bool,
    resample_on_client: bool,
    timeout_s: float | None,
    request_id: str | None,
) -> StreamOptions:
    """Checks a stream's settings; InvalidInputError for what no server would take."""
    check_window_options(hop_ms, top_k, smoothing)
    if timeout_s is not None and not timeout_s > 0:
        raise InvalidInputError(f"timeout_s must be positive or None, got {timeout_s}")
    chosen_id = new_request_id(request_id)
    return StreamOptions(
        model=model,
        version=version,
        hop_ms=hop_ms,
        top_k=top_k,
        smoothing=smoothing,
        include_embedding=include_embedding,
        realtime=realtime,
        resample_on_client=resample_on_client,
        timeout_s=None if timeout_s == float("inf") else timeout_s,
        request_id=chosen_id,
        metadata=connection.metadata(chosen_id),
    )


class StreamReceiver:
    """Reads a stream's responses: the labels of its first result, latency, typed results."""

    def __init__(self, send_log: SendLog) -> None:
        self._send_log = send_log
        self._labels: tuple[str, ...] = ()

    def result(self, response: pb.StreamClassifyResponse) -> StreamResult | None:
        """The typed result of one response (None for an empty one)."""
        if response.labels:
            self._labels = tuple(response.labels)
        latency = None
        if response.HasField("window"):
            latency = self._send_log.latency_ms(response.window.end_ms, time.monotonic())
        return stream_result_from_proto(response, latency, self._labels)
