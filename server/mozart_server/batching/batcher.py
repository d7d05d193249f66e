"""The dynamic batcher: windows from every request and stream of one model version, run together.

A window comes as samples, or as samples with its mel frames already computed (streams
and overlapping clips share frames between windows, inference/streams.py). When the
engine is split (engines/split.py), one batch may mix both: the worker thread runs the
front end once for the rows that came without frames, then the body once for all rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from mozart_server.engines import Engine, EngineOutputs
from mozart_server.engines.split import FrameGeometry
from mozart_server.errors import (
    DEADLINE_SLACK_S,
    DeadlineExceededError,
    ResourceExhaustedError,
    UnavailableError,
)
from mozart_server.observability.metrics import ServerMetrics
from mozart_server.tensors import FloatArray

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatcherConfig:
    """Triton's dynamic batching knobs."""

    max_batch_size: int
    max_queue_delay_us: int
    preferred_batch_sizes: tuple[int, ...]
    max_queue_windows: int


class BatchObserver(Protocol):
    """Sees every computed batch of a version (e.g. observability/drift.py's DriftMonitor)."""

    def observe(
        self, waveforms: FloatArray, probabilities: FloatArray, features: FloatArray | None = None
    ) -> None:
        """Takes in one batch's windows, scores and (split engines) mel frames.

        Called in the engine's worker thread; `features` is [rows, 1, n_mels, frames].
        """

    def close(self) -> None:
        """The batcher closed: no more batches come."""


@dataclass
class BatchSizeStatistics:
    """Engine batches of one size: how many ran, and their compute time."""

    batches: int = 0
    compute_s: float = 0.0


@dataclass
class BatcherStatistics:
    """Counters of one batcher since it started (Triton's ModelStatistics terms)."""

    windows: int = 0  # inference_count: a submission of n windows counts n
    batches: int = 0  # execution_count
    queued: int = 0  # submissions that reached a batch
    queue_s: float = 0.0
    compute_s: float = 0.0
    observe_s: float = 0.0  # the observer's time, in the worker threads (not in compute_s)
    #: batch_stats: batch size (rows) -> the batches of that size
    by_batch_size: dict[int, BatchSizeStatistics] = field(default_factory=dict)


@dataclass
class Reservation:
    """Room in the queue held for one call; `rows` drops to 0 once used or given back."""

    rows: int


@dataclass(frozen=True)
class BatchResult:
    """A caller's rows of one batch, with the time they queued and the batch's compute time."""

    outputs: EngineOutputs
    queue_time_s: float
    compute_time_s: float


@dataclass
class _Pending:
    """One caller's windows waiting in the queue, with the future that answers them."""

    waveforms: FloatArray
    deadline: float | None  # time.monotonic() seconds
    enqueued_at: float
    future: asyncio.Future[BatchResult] = field(repr=False)
    features: FloatArray | None = field(default=None, repr=False)  # the rows' mel frames

    @property
    def rows(self) -> int:
        return int(self.waveforms.shape[0])


class DynamicBatcher:
    """Forms batches from whatever is queued and runs them on the engine in worker threads.

    One batcher serves one model version. `submit` is safe to cancel: a cancelled or
    expired entry is dropped before compute and never holds back anyone else's answer.
    """

    def __init__(
        self,
        engine: Engine,
        config: BatcherConfig,
        metrics: ServerMetrics,
        model_name: str,
        model_version: str,
        *,
        observer: BatchObserver | None = None,
        frames: FrameGeometry | None = None,
    ) -> None:
        self._engine = engine
        self._frames = frames if engine.split else None
        self._observer = observer
        self._config = config
        self._labels = {"model": model_name, "version": model_version}
        self._metrics = metrics
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._reserved_rows = 0
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()  # set whenever windows leave the queue
        self._slots = asyncio.Semaphore(engine.instances)
        self._executor = ThreadPoolExecutor(
            max_workers=engine.instances, thread_name_prefix=f"engine-{model_name}-{model_version}"
        )
        self._running: set[asyncio.Task[None]] = set()
        self._collector: asyncio.Task[None] | None = None
        self._closing = False
        self.statistics = BatcherStatistics()

    @property
    def config(self) -> BatcherConfig:
        """The knobs this batcher runs with."""
        return self._config

    @property
    def frames(self) -> FrameGeometry | None:
        """Where the engine's mel frames lie, when callers may submit frames; else None."""
        return self._frames

    @property
    def queued_windows(self) -> int:
        """Windows waiting in the queue now."""
        return self._queued_rows

    def start(self) -> None:
        """Starts the task that forms batches; call once, on the serving event loop."""
        self._collector = asyncio.get_running_loop().create_task(
            self._collect_forever(), name=f"batcher-{self._labels}"
        )
        self._collector.add_done_callback(_log_failure)
        self._metrics.batchers_open.inc()

    @property
    def capacity(self) -> int:
        """Most windows the queue holds (max_queue_windows)."""
        return self._config.max_queue_windows

    def has_room(self, rows: int) -> bool:
        """Whether `rows` more windows fit in the queue now (reserved room counts as taken)."""
        return self._queued_rows + self._reserved_rows + rows <= self._config.max_queue_windows

    @contextlib.contextmanager
    def reservation(self, rows: int) -> Iterator[Reservation]:
        """Holds room for `rows` windows while a call decodes, so others cannot take it.

        Pass the reservation to `submit`, which turns it into queued windows; whatever is
        not used is given back when the block ends.

        Raises:
            ResourceExhaustedError: the room is not there now.
        """
        self._check_room(rows)
        reserved = Reservation(rows)
        self._reserved_rows += rows
        try:
            yield reserved
        finally:
            self._release(reserved)

    def _release(self, reserved: Reservation) -> None:
        if reserved.rows:
            self._reserved_rows -= reserved.rows
            reserved.rows = 0
            self._room.set()

    async def submit(
        self,
        waveforms: FloatArray,
        deadline: float | None = None,
        reserved: Reservation | None = None,
        *,
        features: FloatArray | None = None,
    ) -> BatchResult:
        """Queues windows of shape [n, window_samples] and returns their outputs.

        All or nothing: the windows are queued only if all of them fit, and when the
        call fails or is cancelled, those of its windows not yet computed are dropped.

        Args:
            waveforms: float32 windows at the model's rate; n may exceed max_batch_size.
            deadline: `time.monotonic()` after which the windows are no longer wanted.
            reserved: room held for this call by `reservation`, used up here.
            features: the windows' mel frames [n, 1, n_mels, frames], computed by the
                engine's front end (`Engine.features`), so that only the body runs for
                them; ignored unless `frames` is set. The waveforms still go to the
                batch observer.

        Raises:
            ResourceExhaustedError: the queue has no room for all the windows.
            DeadlineExceededError: the deadline passed before compute.
            UnavailableError: the batcher is closing.
        """
        rows = int(waveforms.shape[0])
        if features is not None and (self._frames is None or features.shape[0] != rows):
            features = None  # samples alone are always enough
        if reserved is not None:
            self._release(reserved)  # in the same step as queueing: nobody can take it between
        self._check_admission(rows, deadline)
        size = self._config.max_batch_size
        futures = [
            self._enqueue(
                waveforms[i : i + size],
                deadline,
                None if features is None else features[i : i + size],
            )
            for i in range(0, rows, size)
        ]
        self._metrics.queue_depth.labels(**self._labels).set(self._queued_rows)
        self._wakeup.set()
        try:
            # Cancelling the caller cancels these futures; the collector drops their entries.
            parts = [await future for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        if len(parts) == 1:
            return parts[0]
        return BatchResult(
            EngineOutputs(
                np.concatenate([part.outputs.probabilities for part in parts]),
                np.concatenate([part.outputs.logits for part in parts]),
                np.concatenate([part.outputs.embedding for part in parts]),
            ),
            queue_time_s=max(part.queue_time_s for part in parts),
            compute_time_s=max(part.compute_time_s for part in parts),
        )

    async def wait_for_room(self, rows: int, deadline: float | None) -> None:
        """Waits until `rows` windows fit in the queue (for a long clip sent in slices).

        Raises:
            DeadlineExceededError: the deadline passed first.
            UnavailableError: the batcher is closing.
            ValueError: `rows` exceeds the queue's capacity, so it would never fit.
        """
        if rows > self._config.max_queue_windows:
            raise ValueError(f"{rows} windows never fit a queue of {self.capacity}")
        while not self.has_room(rows):
            if self._closing:
                raise UnavailableError("the server is shutting down; retry on another replica")
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                raise DeadlineExceededError("the deadline passed while waiting for the queue")
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), timeout)

    def _check_admission(self, rows: int, deadline: float | None) -> None:
        self._check_room(rows)
        if deadline is not None and deadline <= time.monotonic():
            raise DeadlineExceededError("the deadline passed before the audio was queued")

    def _check_room(self, rows: int) -> None:
        if self._closing:
            raise UnavailableError("the server is shutting down; retry on another replica")
        if not self.has_room(rows):
            raise ResourceExhaustedError(
                f"the queue of model {self._labels['model']} version {self._labels['version']} "
                f"has no room for {rows} more windows ({self._queued_rows} of "
                f"{self._config.max_queue_windows} queued; the queue is full); "
                "retry with backoff"
            )

    def _enqueue(
        self, waveforms: FloatArray, deadline: float | None, features: FloatArray | None
    ) -> asyncio.Future[BatchResult]:
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(waveforms, deadline, time.monotonic(), future, features))
        self._queued_rows += int(waveforms.shape[0])
        return future

    async def _collect_forever(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:
                self._slots.release()
                raise
            if not batch:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            task.add_done_callback(_log_failure)

    async def _next_batch(self) -> list[_Pending]:
        while not self._queue:
            self._wakeup.clear()
            await self._wakeup.wait()
        batch: list[_Pending] = []
        rows = self._take(batch, 0)
        delay_s = self._config.max_queue_delay_us / 1e6
        if delay_s > 0 and batch:
            # Wait for more only until the batch is full or reaches a preferred size.
            give_up_at = batch[0].enqueued_at + delay_s
            while (
                rows < self._config.max_batch_size
                and rows not in self._config.preferred_batch_sizes
            ):
                remaining = give_up_at - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                rows = self._take(batch, rows)
        return batch

    def _take(self, batch: list[_Pending], rows: int) -> int:
        """Moves queued entries into `batch` while they fit; drops cancelled and expired ones."""
        now = time.monotonic()
        while self._queue and rows + self._queue[0].rows <= self._config.max_batch_size:
            entry = self._queue.popleft()
            self._queued_rows -= entry.rows
            if entry.future.done():
                # gRPC cancels a call when its deadline passes, often before we see it expire.
                expired = entry.deadline is not None and entry.deadline - DEADLINE_SLACK_S <= now
                reason = "deadline" if expired else "cancelled"
                self._metrics.windows_dropped.labels(**self._labels, reason=reason).inc(entry.rows)
                continue
            if entry.deadline is not None and entry.deadline <= now:
                entry.future.set_exception(
                    DeadlineExceededError("the deadline passed while the audio was queued")
                )
                self._metrics.windows_dropped.labels(**self._labels, reason="deadline").inc(
                    entry.rows
                )
                continue
            batch.append(entry)
            rows += entry.rows
        self._metrics.queue_depth.labels(**self._labels).set(self._queued_rows)
        self._room.set()
        return rows

    async def _run(self, batch: Sequence[_Pending]) -> None:
        in_flight = self._metrics.batches_in_flight.labels(**self._labels)
        in_flight.inc()
        started = time.monotonic()
        try:
            waveforms = (
                batch[0].waveforms
                if len(batch) == 1
                else np.concatenate([entry.waveforms for entry in batch])
            )
            loop = asyncio.get_running_loop()
            parts = [(entry.rows, entry.features) for entry in batch]
            outputs, observe_s = await loop.run_in_executor(
                self._executor, self._compute, waveforms, parts
            )
        except Exception as error:
            logger.exception("a batch failed in the engine", extra=self._labels)
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(error)
            return
        finally:
            in_flight.dec()
            self._slots.release()
        compute_s = time.monotonic() - started - observe_s
        self._metrics.compute_duration.labels(**self._labels).observe(compute_s)
        self._metrics.batch_size.labels(**self._labels).observe(waveforms.shape[0])
        statistics = self.statistics
        statistics.batches += 1
        statistics.windows += int(waveforms.shape[0])
        statistics.compute_s += compute_s
        same_size = statistics.by_batch_size.setdefault(
            int(waveforms.shape[0]), BatchSizeStatistics()
        )
        same_size.batches += 1
        same_size.compute_s += compute_s
        statistics.observe_s += observe_s
        queue_histogram = self._metrics.queue_duration.labels(**self._labels)
        offset = 0
        for entry in batch:
            queue_s = started - entry.enqueued_at
            queue_histogram.observe(queue_s)
            statistics.queued += 1
            statistics.queue_s += queue_s
            if not entry.future.done():
                entry.future.set_result(
                    BatchResult(outputs.rows(offset, offset + entry.rows), queue_s, compute_s)
                )
            offset += entry.rows

    def _compute(
        self, waveforms: FloatArray, parts: Sequence[tuple[int, FloatArray | None]]
    ) -> tuple[EngineOutputs, float]:
        """Runs the engine, then the observer, in a worker thread; returns the observer's time."""
        mel = None
        if self._frames is None:
            outputs = self._engine.run(waveforms)
        else:
            mel = self._batch_features(waveforms, parts)
            outputs = self._engine.run_features(mel)
        if self._observer is None:
            return outputs, 0.0
        started = time.monotonic()
        try:
            self._observer.observe(waveforms, outputs.probabilities, mel)
        except Exception:
            # Statistics never fail a batch.
            logger.exception("the batch observer failed", extra=self._labels)
        return outputs, time.monotonic() - started

    def _batch_features(
        self, waveforms: FloatArray, parts: Sequence[tuple[int, FloatArray | None]]
    ) -> FloatArray:
        """The batch's mel frames: those submitted, and the front end's for the other rows.

        `parts` holds each caller's (rows, frames or None), in the order of the rows.
        """
        given = [frames for _, frames in parts if frames is not None]
        if not given:
            return self._engine.features(waveforms)
        if len(given) == len(parts):
            return given[0] if len(given) == 1 else np.concatenate(given)
        # Mixed: one front-end run for all the rows that came without frames.
        starts = np.cumsum([0, *(rows for rows, _ in parts)])
        bare = [
            waveforms[start : start + rows]
            for (rows, frames), start in zip(parts, starts, strict=False)
            if frames is None
        ]
        computed = self._engine.features(np.concatenate(bare))
        merged, used = [], 0
        for rows, frames in parts:
            if frames is None:
                merged.append(computed[used : used + rows])
                used += rows
            else:
                merged.append(frames)
        return np.concatenate(merged)

    async def aclose(self) -> None:
        """Stops taking work, lets queued and running batches finish, then stops the worker threads.

        Cancelling aclose (e.g. at the end of a grace period) answers what is still queued
        with UNAVAILABLE.
        """
        self._closing = True
        self._room.set()  # waiters for room see the batcher closing
        try:
            while self._queue or self._running:
                if self._running:
                    await asyncio.wait(set(self._running))
                else:
                    await asyncio.sleep(0.001)  # the collector is about to take the queue
        finally:
            if self._collector is not None:
                self._collector.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._collector
            while self._queue:
                entry = self._queue.popleft()
                if not entry.future.done():
                    entry.future.set_exception(UnavailableError("the server shut down"))
            self._queued_rows = 0
            self._metrics.queue_depth.labels(**self._labels).set(0)
            self._executor.shutdown(wait=False, cancel_futures=True)
            if self._observer is not None:
                self._observer.close()
            if self._collector is not None:
                self._collector = None
                self._metrics.batchers_open.dec()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error(
            "batcher task failed", exc_info=task.exception(), extra={"task": task.get_name()}
        )
