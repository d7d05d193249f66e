"""`mozart analyze`'s measurements: one model version over a grid of layouts and batch limits.

Each grid point builds the server's own engine (EngineFactory, from ServerSettings, so the
same artifact the server would serve) and the server's DynamicBatcher on it, then measures:

- the layout's ceiling: the engine alone, run by `instances` threads back to back, at
  batch 1 and at max_batch_size (the best of the two is the ceiling of that layout);
- what a served request sees: single-window submitters on the batcher, one at a time
  (concurrency 1: the median latency) and many at once (saturation: windows per second).

The run's ceiling is the best layout ceiling measured in the same run, so every ratio
compares figures taken minutes apart on the same machine. Layouts are measured first at
the server's batch limits; the batch limits are then measured on the best layout.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from mozart_server.app import batcher_config
from mozart_server.batching.batcher import DynamicBatcher
from mozart_server.engines import Engine, EngineFactory
from mozart_server.models.manifest import Manifest
from mozart_server.observability.metrics import ServerMetrics
from mozart_server.settings import ServerSettings

# Saturation: the fraction of the run's ceiling a layout must reach to be chosen for latency.
SATURATION_TARGET = 0.85
# Below the target, points within this fraction of the best served throughput tie, or
# within half the best point's own spread over the rounds when that is larger (to MAX_TIE).
THROUGHPUT_TIE = 0.05
MAX_TIE = 0.25
# A spread above this is flagged in the table: the machine was busy, measure again.
NOISY_SPREAD = 0.25
PREFERRED_SIZES = (1, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class Layout:
    """ONNX Runtime parallelism: sessions, intra-op threads, spinning."""

    instances: int
    intra_op_threads: int
    allow_spinning: bool

    def describe(self) -> str:
        """E.g. `2x1` or `1x2 spin`."""
        spin = " spin" if self.allow_spinning else ""
        return f"{self.instances}x{self.intra_op_threads}{spin}"


@dataclass(frozen=True)
class BatchLimits:
    """The dynamic batcher's limits."""

    max_batch_size: int
    max_queue_delay_us: int

    @property
    def preferred_batch_sizes(self) -> list[int]:
        """The server's preferred sizes that fit, and the largest batch itself."""
        sizes = {size for size in PREFERRED_SIZES if size <= self.max_batch_size}
        return sorted(sizes | {self.max_batch_size})

    def describe(self) -> str:
        """E.g. `16/0us`."""
        return f"{self.max_batch_size}/{self.max_queue_delay_us}us"


@dataclass(frozen=True)
class Point:
    """The figures of one grid point."""

    layout: Layout
    limits: BatchLimits
    ceiling_windows_per_s: float  # the engine alone, best of batch 1 and max_batch_size
    batch1_compute_ms: float  # the engine alone, median of one window
    served_windows_per_s: float  # single-window submitters on the batcher, saturating
    c1_median_ms: float  # one submitter at a time, through the batcher
    c1_p99_ms: float
    mean_batch: float  # windows per batch under saturation
    # CPU time of this process per served window at saturation (all threads): on a shared
    # machine, a layout with more threads takes a larger share of the CPUs, and this shows
    # what each window cost regardless of the share.
    cpu_ms_per_window: float
    spread: float = 0.0  # served throughput over rounds: max / min - 1
    rounds: int = 1


@dataclass(frozen=True)
class Subject:
    """The model version measured, and the settings the grid points start from."""

    settings: ServerSettings
    manifest: Manifest
    version_path: Path


@dataclass(frozen=True)
class Grid:
    """What to measure."""

    layouts: tuple[Layout, ...]
    limits: tuple[BatchLimits, ...]
    seconds: float = 2.0
    concurrency: int = 32
    rounds: int = 2


@dataclass
class Analysis:
    """All points of one run, and the choice."""

    model: str
    version: str
    artifact: str
    precision: str
    cpus: int
    grid: Grid
    points: list[Point] = field(default_factory=list)

    @property
    def ceiling_windows_per_s(self) -> float:
        """The run's ceiling: the best engine-alone throughput over every layout measured."""
        return max(point.ceiling_windows_per_s for point in self.points)

    @property
    def batch1_compute_ms(self) -> float:
        """The fastest batch-1 compute of the run (the latency a request cannot beat)."""
        return min(point.batch1_compute_ms for point in self.points)

    def saturation(self, point: Point) -> float:
        """Served throughput as a fraction of the run's ceiling."""
        return point.served_windows_per_s / self.ceiling_windows_per_s

    def best(self) -> tuple[Point, str]:
        """The chosen point, and why (docs/analyze.md, "How the winner is chosen")."""
        target = [p for p in self.points if self.saturation(p) >= SATURATION_TARGET]
        if target:
            chosen = min(target, key=lambda p: p.c1_median_ms)
            return chosen, (
                f"lowest concurrency-1 median ({chosen.c1_median_ms:.2f} ms) among the "
                f"{_points(len(target))} at >= {SATURATION_TARGET:.2f} of the ceiling "
                f"(this one {self.saturation(chosen):.2f})"
            )
        top = max(self.points, key=lambda p: p.served_windows_per_s)
        # Differences within half the best point's range over the rounds are ties.
        tie = min(MAX_TIE, max(THROUGHPUT_TIE, top.spread / 2))
        floor = (1 - tie) * top.served_windows_per_s
        close = [p for p in self.points if p.served_windows_per_s >= floor]
        chosen = min(close, key=lambda p: p.c1_median_ms)
        return chosen, (
            f"no point reached {SATURATION_TARGET:.2f} of the ceiling; lowest concurrency-1 "
            f"median ({chosen.c1_median_ms:.2f} ms) among the {_points(len(close))} within "
            f"{tie:.0%} of the best served throughput (half the best point's spread over the "
            f"rounds, at least {THROUGHPUT_TIE:.0%}, at most {MAX_TIE:.0%}; this one "
            f"{self.saturation(chosen):.2f} of the ceiling)"
        )


def _points(count: int) -> str:
    return "1 point" if count == 1 else f"{count} points"


def point_settings(base: ServerSettings, layout: Layout, limits: BatchLimits) -> ServerSettings:
    """`base` with one grid point's layout and batch limits (explicit, so nothing is auto)."""
    return ServerSettings(
        model_repository=base.repository.model_repository,
        engine=base.engine.engine,
        providers=base.engine.onnx.providers,
        graph_optimization_level=base.engine.onnx.graph_optimization_level,
        inter_op_threads=base.engine.onnx.inter_op_threads,
        instances=layout.instances,
        intra_op_threads=layout.intra_op_threads,
        allow_spinning=layout.allow_spinning,
        max_batch_size=limits.max_batch_size,
        max_queue_delay_us=limits.max_queue_delay_us,
        preferred_batch_sizes=limits.preferred_batch_sizes,
        max_queue_windows=max(base.batching.max_queue_windows, 4 * limits.max_batch_size),
    )


def measure_point(
    subject: Subject, layout: Layout, limits: BatchLimits, grid: Grid
) -> tuple[Point, str, str]:
    """Measures one grid point; returns it with the artifact file and precision served."""
    manifest = subject.manifest
    point = point_settings(subject.settings, layout, limits)
    engine = EngineFactory(point.engine).create(
        manifest.name, subject.version_path, manifest.artifacts
    )
    try:
        rng = np.random.default_rng(0)
        one = (rng.standard_normal((1, manifest.window_samples)) * 0.1).astype(np.float32)
        full = np.repeat(one, limits.max_batch_size, axis=0)
        engine.run(one)
        engine.run(full)
        seconds = grid.seconds
        batch1 = _engine_alone(engine, one, seconds / 2, 1)
        ceiling_1 = _engine_alone(engine, one, seconds / 2, engine.instances)
        ceiling_full = _engine_alone(engine, full, seconds / 2, engine.instances)
        served = asyncio.run(
            _served(engine, point, manifest, one, seconds=seconds, concurrency=grid.concurrency)
        )
    finally:
        engine.close()
    c1_latencies, saturated_windows_per_s, mean_batch, cpu_s_per_window = served
    return (
        Point(
            layout=layout,
            limits=limits,
            ceiling_windows_per_s=max(ceiling_1[0], ceiling_full[0]),
            batch1_compute_ms=statistics.median(batch1[1]) * 1000,
            served_windows_per_s=saturated_windows_per_s,
            c1_median_ms=statistics.median(c1_latencies) * 1000,
            c1_p99_ms=_percentile(c1_latencies, 0.99) * 1000,
            mean_batch=mean_batch,
            cpu_ms_per_window=cpu_s_per_window * 1000,
        ),
        engine.artifact.file,
        engine.artifact.precision,
    )


def _engine_alone(
    engine: Engine, batch: np.ndarray, seconds: float, threads: int
) -> tuple[float, list[float]]:
    """Windows per second and per-run latencies of `threads` threads running `batch`."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def loop() -> None:
        mine: list[float] = []
        while time.perf_counter() < stop_at or not mine:
            started = time.perf_counter()
            engine.run(batch)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    return len(latencies) * batch.shape[0] / elapsed, latencies


async def _served(
    engine: Engine,
    settings: ServerSettings,
    manifest: Manifest,
    window: np.ndarray,
    *,
    seconds: float,
    concurrency: int,
) -> tuple[list[float], float, float, float]:
    """Through the batcher: c=1 latencies, saturated windows/s, mean batch, CPU s per window."""
    metrics = ServerMetrics(CollectorRegistry())
    batcher = DynamicBatcher(
        engine, batcher_config(settings.batching), metrics, manifest.name, manifest.version
    )
    batcher.start()
    try:
        await _submitters(batcher, window, 0.2, concurrency)  # warm-up: every batch shape
        c1 = await _submitters(batcher, window, seconds / 2, 1)
        batches_before = batcher.statistics.batches
        windows_before = batcher.statistics.windows
        started, cpu_started = time.perf_counter(), time.process_time()
        saturated = await _submitters(batcher, window, seconds, concurrency)
        elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        batches = batcher.statistics.batches - batches_before
        windows = batcher.statistics.windows - windows_before
    finally:
        await batcher.aclose()
    return c1, len(saturated) / elapsed, windows / max(1, batches), cpu_s / max(1, len(saturated))


async def _submitters(
    batcher: DynamicBatcher, window: np.ndarray, seconds: float, concurrency: int
) -> list[float]:
    """`concurrency` callers each submitting one window after another; their latencies."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await batcher.submit(window)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return latencies


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median_point(points: Sequence[Point]) -> Point:
    """One point's figures over several rounds: the median of each."""
    first = points[0]

    def median(name: str) -> float:
        return float(statistics.median(getattr(point, name) for point in points))

    return Point(
        layout=first.layout,
        limits=first.limits,
        ceiling_windows_per_s=median("ceiling_windows_per_s"),
        batch1_compute_ms=median("batch1_compute_ms"),
        served_windows_per_s=median("served_windows_per_s"),
        c1_median_ms=median("c1_median_ms"),
        c1_p99_ms=median("c1_p99_ms"),
        mean_batch=median("mean_batch"),
        cpu_ms_per_window=median("cpu_ms_per_window"),
        spread=max(p.served_windows_per_s for p in points)
        / max(1e-9, min(p.served_windows_per_s for p in points))
        - 1,
        rounds=len(points),
    )


def run_grid(subject: Subject, grid: Grid, cpus: int, say: Callable[[str], None]) -> Analysis:
    """Layouts at the first batch limits, then every other batch limit on the best layout.

    Each stage measures its points `grid.rounds` times, in alternating order (ABBA), and
    keeps each figure's median: the machine's load drifts, and alternating spreads the
    drift over every point instead of favouring the ones measured in a quiet minute.
    """
    first_limits = grid.limits[0]
    stages = [[(layout, first_limits) for layout in grid.layouts]]
    total = grid.rounds * (len(grid.layouts) + len(grid.limits) - 1)
    done = 0
    found: dict[tuple[Layout, BatchLimits], list[Point]] = {}
    served: tuple[str, str] = ("", "")

    def measure(todo: list[tuple[Layout, BatchLimits]]) -> None:
        nonlocal done, served
        for round_index in range(grid.rounds):
            for layout, limits in todo if round_index % 2 == 0 else todo[::-1]:
                done += 1
                say(f"[{done}/{total}] {layout.describe()} batch {limits.describe()} ...")
                point, *served_artifact = measure_point(subject, layout, limits, grid)
                served = (served_artifact[0], served_artifact[1])
                found.setdefault((layout, limits), []).append(point)
                say(
                    f"    ceiling {point.ceiling_windows_per_s:.0f} w/s, served "
                    f"{point.served_windows_per_s:.0f} w/s, c=1 median "
                    f"{point.c1_median_ms:.2f} ms"
                )

    def analysis() -> Analysis:
        manifest = subject.manifest
        result = Analysis(manifest.name, manifest.version, served[0], served[1], cpus, grid)
        result.points = [median_point(points) for points in found.values()]
        return result

    measure(stages[0])
    best_layout = analysis().best()[0].layout
    measure([(best_layout, limits) for limits in grid.limits[1:]])
    return analysis()
