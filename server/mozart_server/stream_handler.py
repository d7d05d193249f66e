"""One StreamClassify call: read config then audio, submit windows, send results in order.

Reads pause while the stream has `max_windows_in_flight_per_stream` windows queued or
computing, so a fast sender cannot make the server buffer without bound. Every task the
call starts is cancelled and awaited when the call ends, however it ends.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import numpy as np

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_server import conversion
from mozart_server.batcher import BatchResult
from mozart_server.engine import FloatArray
from mozart_server.errors import InvalidArgumentError, OutOfRangeError, ResourceExhaustedError
from mozart_server.health import ServingState
from mozart_server.interceptors import current_request_id, note_model
from mozart_server.metrics import ServerMetrics
from mozart_server.registry import ModelRegistry, ServingModel
from mozart_server.settings import ServerSettings
from mozart_server.streaming import StreamAudio, Window
from mozart_server.windowing import hop_samples

if TYPE_CHECKING:
    from mozart_server.interceptors import Context

# grpc-stubs does not declare the end-of-stream marker of context.read().
EOF = grpc.aio.EOF  # type: ignore[attr-defined]
T = TypeVar("T")


@dataclass(frozen=True)
class _InFlight:
    window: Window
    task: asyncio.Task[BatchResult]


class StreamHandler:
    """Serves one stream; construct per call and `await run()`."""

    def __init__(
        self,
        registry: ModelRegistry,
        settings: ServerSettings,
        metrics: ServerMetrics,
        state: ServingState,
        context: Context,
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._metrics = metrics
        self._state = state
        self._context = context
        self._tasks: set[asyncio.Task[Any]] = set()
        self._request_id = current_request_id()
        self._score_rows: list[FloatArray] = []
        self._smoothed: FloatArray | None = None

    async def run(self) -> None:
        """Serves the stream until half-close, drain, error or disconnect."""
        self._metrics.active_streams.inc()
        try:
            await self._serve()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
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

    async def _read(self) -> Any:
        timeout_s = self._settings.stream_idle_timeout_s
        try:
            return await asyncio.wait_for(self._context.read(), timeout_s)
        except TimeoutError:
            raise InvalidArgumentError(
                f"no message arrived for {timeout_s} s (stream_idle_timeout_s)"
            ) from None

    async def _configure(self) -> tuple[ServingModel, conversion.WindowOptions, StreamAudio]:
        """Reads and checks the StreamConfig that must come first."""
        first = await self._read()
        if first is EOF:
            raise InvalidArgumentError("the stream ended before its StreamConfig")
        if first.WhichOneof("request") != "config":
            raise InvalidArgumentError("the first message must carry only a StreamConfig")
        config: pb.StreamConfig = first.config
        model = self._registry.resolve(config.model.name, config.model.version)
        note_model(model.name, model.version)
        manifest = model.manifest
        options = conversion.window_options(
            manifest, config.hop_ms, config.top_k, config.smoothing, self._settings.default_top_k
        )
        audio = StreamAudio(
            conversion.audio_format(config.format),
            manifest.sample_rate_hz,
            manifest.window_samples,
            hop_samples(options.hop_ms, manifest.sample_rate_hz),
        )
        return model, options, audio

    async def _serve(self) -> None:
        model, options, audio = await self._configure()
        ready: deque[Window] = deque()
        pending: deque[_InFlight] = deque()
        cap = self._settings.max_windows_in_flight_per_stream
        read_task: asyncio.Task[Any] | None = None
        drain_task = self._spawn(self._state.draining.wait())
        input_done = False
        while True:
            while ready and len(pending) < cap:
                window = ready.popleft()
                batch = window.samples[np.newaxis, :]
                pending.append(_InFlight(window, self._spawn(model.batcher.submit(batch))))
            if read_task is None and not input_done and not ready and len(pending) < cap:
                read_task = self._spawn(self._read())
            waiting: set[asyncio.Future[Any]] = set()
            if read_task is not None:
                waiting.update((read_task, drain_task))
            if pending:
                waiting.add(pending[0].task)
            if not waiting:
                break
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            while pending and pending[0].task.done():
                await self._send_window(model, pending.popleft(), options)
            if read_task is not None and read_task.done():
                message, read_task = read_task.result(), None
                if message is not EOF:
                    ready.extend(audio.push(self._audio_bytes(message)))
                    self._check_duration(audio)
                    continue
            elif read_task is not None and drain_task.done():
                # Draining for shutdown: stop reading, finish what is in flight, summarize.
                read_task.cancel()
                read_task = None
            else:
                continue
            input_done = True
            ready.extend(audio.finish())
        summary = conversion.summary(
            model.manifest, self._score_rows, options.top_k, audio.input_duration_s
        )
        await self._context.write(
            pb.StreamClassifyResponse(is_final=True, summary=summary, request_id=self._request_id)
        )

    def _audio_bytes(self, message: pb.StreamClassifyRequest) -> bytes:
        """The audio of a later message, after checking it is audio and not too large."""
        if message.WhichOneof("request") != "audio":
            raise InvalidArgumentError("a stream carries one StreamConfig, in its first message")
        size = len(message.audio)
        if size > self._settings.max_chunk_bytes:
            raise InvalidArgumentError(
                f"an audio chunk of {size} bytes exceeds max_chunk_bytes "
                f"({self._settings.max_chunk_bytes})"
            )
        return message.audio

    def _check_duration(self, audio: StreamAudio) -> None:
        limit_s = self._settings.max_stream_duration_s
        if audio.input_duration_s > limit_s:
            raise OutOfRangeError(f"the stream is longer than max_stream_duration_s ({limit_s} s)")

    async def _send_window(
        self, model: ServingModel, in_flight: _InFlight, options: conversion.WindowOptions
    ) -> None:
        """Sends one window's result, or an in-band notice when the queue refused it."""
        try:
            result = in_flight.task.result()
        except ResourceExhaustedError as error:
            notice = pb.StreamNotice(code="RESOURCE_EXHAUSTED", message=error.message)
            await self._context.write(
                pb.StreamClassifyResponse(notice=notice, request_id=self._request_id)
            )
            return
        scores = result.outputs.probabilities[0]
        if self._smoothed is None or options.smoothing == 0.0:
            self._smoothed = scores
        else:
            weight = np.float32(options.smoothing)
            self._smoothed = weight * self._smoothed + (np.float32(1.0) - weight) * scores
        self._score_rows.append(scores)
        window = in_flight.window
        message = conversion.window_result(
            model,
            index=window.index,
            start_sample=window.start_sample,
            scores=scores,
            smoothed=self._smoothed,
            top_k=options.top_k,
            queue_time_s=result.queue_time_s,
            compute_time_s=result.compute_time_s,
        )
        await self._context.write(
            pb.StreamClassifyResponse(is_final=False, window=message, request_id=self._request_id)
        )
