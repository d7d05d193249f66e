"""One live stream, whatever the transport: config, then audio in, window results out in order.

The API hands over a `StreamSource` (the config, then audio chunks) and a
`StreamSink` (where results, notices and the summary go). The session holds a
lease on its model version from start to end, so a stream that began on a
version ends on it even if a newer one is swapped in meanwhile.

Reads pause while the stream has `max_windows_in_flight_per_stream` windows queued
or computing, so a fast sender cannot make the server buffer without bound; a client
that stops taking results (the sink's writes wait) gets `stream_write_timeout_s`, then
the stream ends RESOURCE_EXHAUSTED. Every task the session starts is cancelled and
awaited when it ends, however it ends. Nothing is created per chunk: one reader task per
stream awaits the source under one rescheduled idle timeout (`_StreamReader`), and the
send loop wakes per result, drain or cut, not per chunk.

Each window goes to the batcher with its mel frames when the engine is split and the
stream's hop is a whole number of STFT hops (`FrameGeometry.divides`, e.g. 16,000 samples
= 50 hops of 320): consecutive windows then share all but the last hop's frames, so a
window computes only the frames of the audio it adds (`_StreamFrames`, in a worker
thread, never on the event loop) and only the body runs for it in the batch. A hop that
is not a whole number of STFT hops (e.g. 250 ms = 4,000 samples = 12.5 hops) sends the
window's samples, and the batch's worker thread runs the front end on them: the same
scores, at the full window's front-end cost.

Shutdown reaches a session twice: `draining` (stop reading, finish the windows already
read, send the summary marked `StreamEnd.DRAINED`) and `cut` (the grace period is
over: end at once, UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, TypeVar

import numpy as np

from mozart_server.audio.decode import AudioFormat
from mozart_server.audio.stream import StreamAudio, Window
from mozart_server.audio.windowing import hop_samples
from mozart_server.batching.batcher import BatchResult, DynamicBatcher
from mozart_server.engines import Engine
from mozart_server.engines.split import FrameGeometry
from mozart_server.errors import (
    InvalidArgumentError,
    NonFiniteScoresError,
    OutOfRangeError,
    ResourceExhaustedError,
    UnavailableError,
)
from mozart_server.inference.flags import WindowFlags, flag_window, window_level_dbfs
from mozart_server.inference.guards import ensure_finite
from mozart_server.inference.options import WindowOptions, window_options
from mozart_server.inference.results import Summary, WindowScores, summarize
from mozart_server.inference.shadow import start_shadow
from mozart_server.models.manifest import Manifest
from mozart_server.models.registry import ModelRegistry, ServingVersion
from mozart_server.observability.context import note_model
from mozart_server.observability.metrics import ServerMetrics
from mozart_server.settings import StreamSettings
from mozart_server.tensors import FloatArray

T = TypeVar("T")

DRAINING_MESSAGE = "the server is draining for shutdown; retry on another replica"
CUT_MESSAGE = (
    "server shutting down: the stream was still open at the end of the shutdown grace "
    "period (shutdown_grace_s); send the rest of its audio to another replica"
)


class StreamEnd(Enum):
    """Why a stream's summary came."""

    # The client half-closed, and every window of its audio was classified.
    COMPLETE = "complete"
    # The server is shutting down: it stopped reading the stream and summarized the
    # windows of the audio it had read; the rest was not classified.
    DRAINED = "drained"


@dataclass(frozen=True)
class StreamRequest:
    """A stream's configuration, as every API hands it over."""

    model_name: str
    model_version: str
    audio_format: AudioFormat
    hop_ms: int = 0
    top_k: int = 0
    smoothing: float = 0.0
    routing_key: str = ""  # splits unversioned streams under a rollout, once per stream
    include_embedding: bool = False  # also return each window's `embedding` output


class StreamSource(Protocol):
    """Where a stream's configuration and audio come from."""

    async def config(self) -> StreamRequest:
        """The stream's configuration (the first thing a client sends)."""

    async def audio(self) -> bytes | None:
        """The next audio chunk; None once the client has sent everything."""


class StreamSink(Protocol):
    """Where a stream's results go, in order."""

    async def window(self, manifest: Manifest, window: WindowScores, top_k: int) -> None:
        """One window's result."""

    async def notice(self, code: str, message: str) -> None:
        """A recoverable problem with one window (e.g. RESOURCE_EXHAUSTED), in-band."""

    async def summary(
        self, manifest: Manifest, summary: Summary, top_k: int, end: StreamEnd
    ) -> None:
        """The last message: the mean of every window's scores, and why the stream ended."""


@dataclass(frozen=True)
class _InFlight:
    window: Window
    task: asyncio.Task[BatchResult]
    arrived_at: float  # time.monotonic() when the chunk that completed the window came


class _StreamFrames:
    """The mel frames of a stream's last window; each window computes only those it adds.

    `start` is called in window order, and each window's frames are the previous
    window's minus its first `step` frames, plus the front end's frames of the window's
    last samples (computed in a worker thread, at once, while the previous window's may
    still be computing). Those last frames are at least `min_run_frames` (so that they
    are the window's own bit for bit; see FrameGeometry), so with a small hop a window
    computes more frames than it adds. A window that does not follow the previous one,
    or whose previous frames failed, gets all its frames from its own samples.
    """

    def __init__(
        self,
        engine: Engine,
        geometry: FrameGeometry,
        hop: int,
        spawn: Callable[[Coroutine[Any, Any, FloatArray]], asyncio.Task[FloatArray]],
    ) -> None:
        self._engine = engine
        self._geometry = geometry
        self._step = hop // geometry.hop_length
        # Frames each window computes: what it adds, or the fewest that are exact.
        self._computed = min(geometry.window_frames, max(self._step, geometry.min_run_frames))
        self._spawn = spawn
        self._previous: asyncio.Task[FloatArray] | None = None
        self._previous_index = -1

    def start(self, window: Window) -> asyncio.Task[FloatArray]:
        """Starts computing the frames of `window`, [1, 1, n_mels, frames]."""
        frames = self._geometry.window_frames
        follows = self._previous is not None and window.index == self._previous_index + 1
        previous = self._previous if follows and self._step < frames else None
        task = self._spawn(self._frames(window, previous))
        self._previous, self._previous_index = task, window.index
        return task

    async def _frames(
        self, window: Window, previous: asyncio.Task[FloatArray] | None
    ) -> FloatArray:
        geometry, step = self._geometry, self._step
        kept = geometry.window_frames - self._computed
        if previous is None or kept == 0:
            return await asyncio.to_thread(self._engine.features, window.samples[np.newaxis])
        start = kept * geometry.hop_length
        tail = window.samples[np.newaxis, start : start + geometry.run_samples(self._computed)]
        new = await asyncio.to_thread(self._engine.features, tail)
        try:
            before = await asyncio.shield(previous)
        except asyncio.CancelledError:
            if not previous.cancelled():
                raise  # this task itself is cancelled
            before = None
        except Exception:
            before = None  # the previous window's frames failed (its own caller sees why)
        if before is None:
            return await asyncio.to_thread(self._engine.features, window.samples[np.newaxis])
        return np.concatenate([before[..., step : step + kept], new], axis=-1)


class _StreamReader:
    """A stream's read side, in one long-lived task: chunks in, windows submitted in order.

    `run` awaits the source directly (nothing is created per chunk) under one idle
    timeout, rescheduled per read; it pauses while the stream has `cap` windows read but
    not yet sent (`ready` waiting for room, `pending` submitted), and the send side calls
    `submit_ready` as it takes windows off `pending`. Each submitted window's task sets
    `wake` when done, so the send side wakes per result, not per chunk.
    """

    def __init__(
        self,
        audio: StreamAudio,
        submit: Callable[[Window], asyncio.Task[BatchResult]],
        settings: StreamSettings,
        wake: asyncio.Event,
    ) -> None:
        self.ready: deque[tuple[Window, float]] = deque()
        self.pending: deque[_InFlight] = deque()
        self._audio = audio
        self._submit = submit
        self._settings = settings
        self._cap = settings.max_windows_in_flight_per_stream
        self._wake = wake
        self._room = asyncio.Event()

    def _woken(self, _: asyncio.Future[Any]) -> None:
        self._wake.set()

    def submit_ready(self) -> None:
        """Submits read windows while the cap allows; lets reads go on once all are."""
        while self.ready and len(self.pending) < self._cap:
            window, arrived_at = self.ready.popleft()
            task = self._submit(window)
            task.add_done_callback(self._woken)
            self.pending.append(_InFlight(window, task, arrived_at))
        if not self.ready and len(self.pending) < self._cap:
            self._room.set()

    async def run(self, source: StreamSource) -> None:
        """Reads to the end of the stream's audio.

        Raises:
            InvalidArgumentError: idle past `stream_idle_timeout_s`, a chunk over
                `max_chunk_bytes`, or audio the decoder refuses.
            OutOfRangeError: audio past `max_stream_duration_s`.
        """
        idle_s = self._settings.stream_idle_timeout_s
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as idle:
                while True:
                    while self.ready or len(self.pending) >= self._cap:
                        idle.reschedule(None)  # paused at the cap: not the client idling
                        self._room.clear()
                        await self._room.wait()
                    idle.reschedule(loop.time() + idle_s)
                    data = await source.audio()
                    arrived_at = time.monotonic()
                    if data is None:
                        idle.reschedule(None)
                        self.ready.extend((w, arrived_at) for w in self._audio.finish())
                        self.submit_ready()
                        return
                    self._check_chunk(data)
                    self.ready.extend((w, arrived_at) for w in self._audio.push(data))
                    self._check_duration()
                    if self.ready:
                        self.submit_ready()
        except TimeoutError:
            raise InvalidArgumentError(
                f"no message arrived for {idle_s} s (stream_idle_timeout_s)"
            ) from None

    def _check_chunk(self, data: bytes) -> None:
        if len(data) > self._settings.max_chunk_bytes:
            raise InvalidArgumentError(
                f"an audio chunk of {len(data)} bytes exceeds max_chunk_bytes "
                f"({self._settings.max_chunk_bytes})"
            )

    def _check_duration(self) -> None:
        limit_s = self._settings.max_stream_duration_s
        if self._audio.input_duration_s > limit_s:
            raise OutOfRangeError(f"the stream is longer than max_stream_duration_s ({limit_s} s)")


async def _submit_window(
    batcher: DynamicBatcher, window: Window, frames: asyncio.Task[FloatArray] | None
) -> BatchResult:
    """Queues one window, with its frames when the stream computes them."""
    features = None if frames is None else await frames
    return await batcher.submit(window.samples[np.newaxis, :], features=features)


class StreamSession:
    """Serves one stream; construct per stream and `await run(source, sink)`."""

    def __init__(
        self,
        registry: ModelRegistry,
        settings: StreamSettings,
        metrics: ServerMetrics,
        draining: asyncio.Event,
        cut: asyncio.Event,
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._metrics = metrics
        self._draining = draining
        self._cut = cut
        self._tasks: set[asyncio.Task[Any]] = set()
        self._score_rows: list[FloatArray] = []
        self._flags: list[WindowFlags] = []
        self._smoothed: FloatArray | None = None
        self._include_embedding = False

    async def run(self, source: StreamSource, sink: StreamSink) -> None:
        """Serves the stream until the end of its audio, drain, error or disconnect."""
        self._metrics.active_streams.inc()
        try:
            drain = self._spawn(self._draining.wait())
            cut = self._spawn(self._cut.wait())
            request = await self._config(source, drain)
            # Resolved once: a stream stays on one version for its whole life (sticky).
            lease = self._registry.lease(
                request.model_name, request.model_version, request.routing_key, judged=False
            )
            with lease as model:
                note_model(model.name, model.version)
                await self._serve(model, request, source, sink, drain=drain, cut=cut)
        finally:
            for task in self._tasks:
                task.cancel()
            try:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            finally:
                # Even when gRPC cancels this call meanwhile (its client went away).
                self._metrics.active_streams.dec()

    def _spawn(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        self._metrics.stream_tasks.inc()
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._metrics.stream_tasks.dec()
        if not task.cancelled():
            task.exception()  # retrieved here; the loop below re-raises it where it matters

    async def _before_idle_timeout(self, awaitable: Awaitable[T]) -> T:
        timeout_s = self._settings.stream_idle_timeout_s
        try:
            return await asyncio.wait_for(awaitable, timeout_s)
        except TimeoutError:
            raise InvalidArgumentError(
                f"no message arrived for {timeout_s} s (stream_idle_timeout_s)"
            ) from None

    async def _config(self, source: StreamSource, drain: asyncio.Task[Any]) -> StreamRequest:
        """The stream's configuration; UNAVAILABLE if the server drains before it comes."""
        config = self._spawn(self._before_idle_timeout(source.config()))
        await asyncio.wait((config, drain), return_when=asyncio.FIRST_COMPLETED)
        if not config.done():
            raise UnavailableError(DRAINING_MESSAGE)
        return config.result()

    async def _write(self, send: Awaitable[None]) -> None:
        """Sends one message; RESOURCE_EXHAUSTED when the client does not take it in time."""
        timeout_s = self._settings.stream_write_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await send
        except TimeoutError:
            raise ResourceExhaustedError(
                f"the client did not read the stream's results for {timeout_s} s "
                "(stream_write_timeout_s); read them as they come"
            ) from None

    async def _serve(
        self,
        model: ServingVersion,
        request: StreamRequest,
        source: StreamSource,
        sink: StreamSink,
        *,
        drain: asyncio.Task[Any],
        cut: asyncio.Task[Any],
    ) -> None:
        """Sends the results in order; a `_StreamReader` task reads and submits.

        This loop wakes (`wake`, set from done callbacks) when a window's result, the
        reader's end, drain or cut comes: not per chunk.
        """
        manifest = model.manifest
        self._include_embedding = request.include_embedding
        options = window_options(
            manifest, request.hop_ms, request.top_k, request.smoothing,
            self._settings.default_top_k,
        )  # fmt: skip
        hop = hop_samples(options.hop_ms, manifest.sample_rate_hz)
        audio = StreamAudio(
            request.audio_format,
            manifest.sample_rate_hz,
            manifest.window_samples,
            hop,
            self._settings.float_samples,
        )
        geometry = model.batcher.frames
        frames = (
            _StreamFrames(model.engine, geometry, hop, self._spawn)
            if geometry is not None and geometry.divides(hop)
            else None
        )

        def submit(window: Window) -> asyncio.Task[BatchResult]:
            window_frames = None if frames is None else frames.start(window)
            return self._spawn(_submit_window(model.batcher, window, window_frames))

        wake = asyncio.Event()
        reads = _StreamReader(audio, submit, self._settings, wake)
        pending = reads.pending
        reader = self._spawn(reads.run(source))
        for task in (reader, drain, cut):
            task.add_done_callback(lambda _: wake.set())
        end = StreamEnd.COMPLETE
        while True:
            wake.clear()
            if cut.done():
                raise UnavailableError(CUT_MESSAGE)
            if pending and pending[0].task.done():
                await self._send_window(model, pending.popleft(), options, sink)
                reads.submit_ready()
                continue  # cut may have come meanwhile
            if reader.done():
                if not reader.cancelled():
                    reader.result()  # the stream's own error (idle, chunk size, format, length)
                if not reads.ready and not pending:
                    break
            elif drain.done():
                # Draining for shutdown: stop reading, finish the windows of the audio
                # read so far (a partial window or frame at its end is dropped), summarize.
                reader.cancel()
                end = StreamEnd.DRAINED
            await wake.wait()
        summary = summarize(manifest, self._score_rows, audio.input_duration_s, self._flags)
        await self._write(sink.summary(manifest, summary, options.top_k, end))

    async def _send_window(
        self,
        model: ServingVersion,
        in_flight: _InFlight,
        options: WindowOptions,
        sink: StreamSink,
    ) -> None:
        """Sends one window's result, or an in-band notice when the queue refused it.

        Raises:
            NonFiniteScoresError: the model returned NaN or infinity (the stream ends INTERNAL).
        """
        try:
            result = in_flight.task.result()
        except ResourceExhaustedError as error:
            await self._write(sink.notice("RESOURCE_EXHAUSTED", error.message))
            return
        scores = result.outputs.probabilities[0]
        window = in_flight.window
        router = self._registry.router
        latency_s = result.queue_time_s + result.compute_time_s
        try:
            ensure_finite(scores, model, self._metrics)
        except NonFiniteScoresError:
            router.record(model.name, model.version, "INTERNAL", latency_s)
            raise
        router.record(model.name, model.version, "OK", latency_s)
        rows = result.outputs.probabilities
        router.record_scores(model.name, model.version, list(model.manifest.labels), rows)
        start_shadow(self._registry, self._metrics, model, window.samples[np.newaxis, :], rows)
        if self._smoothed is None or options.smoothing == 0.0:
            self._smoothed = scores
        else:
            weight = np.float32(options.smoothing)
            self._smoothed = weight * self._smoothed + (np.float32(1.0) - weight) * scores
        self._score_rows.append(scores)
        flags = flag_window(model.manifest, window_level_dbfs(window.samples), scores)
        self._flags.append(flags)
        scored = WindowScores(
            index=window.index,
            start_sample=window.start_sample,
            scores=scores,
            smoothed=self._smoothed,
            queue_time_s=result.queue_time_s,
            compute_time_s=result.compute_time_s,
            embedding=result.outputs.embedding[0] if self._include_embedding else None,
            flags=flags,
        )
        await self._write(sink.window(model.manifest, scored, options.top_k))
        self._metrics.stream_window_latency.labels(model=model.name, version=model.version).observe(
            time.monotonic() - in_flight.arrived_at
        )
