"""Running an artifact on windows: its scores, and its speed next to the FP32 reference.

Artifacts run on the server's own engines (`mozart_server.engines`), built with the
serving settings, so the figures are those of what would serve. Speed is measured for
the candidate and the reference in alternating rounds in one process, and reported as
ratios: these machines are shared, and absolute times do not carry over.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from mozart_server.engines import Engine
from mozart_server.tensors import FloatArray

SCORE_BATCH = 16


def probabilities(engine: Engine, windows: FloatArray, batch: int = SCORE_BATCH) -> FloatArray:
    """The engine's probabilities for every window, run in batches."""
    rows = [
        engine.run(windows[start : start + batch]).probabilities
        for start in range(0, len(windows), batch)
    ]
    return np.concatenate(rows)


@dataclass(frozen=True)
class BatchSpeed:
    """One batch size: windows per second and the median time of one batch."""

    batch_size: int
    windows_per_s: float
    median_ms: float


@dataclass(frozen=True)
class SpeedComparison:
    """A candidate against the reference, batch size by batch size."""

    reference: tuple[BatchSpeed, ...]
    candidate: tuple[BatchSpeed, ...]

    @staticmethod
    def _best(speeds: Sequence[BatchSpeed]) -> BatchSpeed:
        return max(speeds, key=lambda speed: speed.windows_per_s)

    @property
    def best_throughput_ratio(self) -> float:
        """The candidate's best windows/s over the reference's best windows/s."""
        return self._best(self.candidate).windows_per_s / self._best(self.reference).windows_per_s

    @property
    def batch1_latency_ratio(self) -> float:
        """Reference batch-1 time over the candidate's (above 1: the candidate is faster)."""
        reference = next(speed for speed in self.reference if speed.batch_size == 1)
        candidate = next(speed for speed in self.candidate if speed.batch_size == 1)
        return reference.median_ms / candidate.median_ms

    def as_dict(self) -> dict[str, object]:
        """The figures as JSON-ready values."""
        return {
            "batch1_latency_ratio": round(self.batch1_latency_ratio, 3),
            "best_throughput_ratio": round(self.best_throughput_ratio, 3),
            "best_batch_size": self._best(self.candidate).batch_size,
            "reference": [asdict(speed) for speed in self.reference],
            "candidate": [asdict(speed) for speed in self.candidate],
        }


def _time_batches(engine: Engine, batch: FloatArray, seconds: float) -> list[float]:
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        started = time.perf_counter()
        engine.run(batch)
        times.append(time.perf_counter() - started)
    return times


def compare_speed(
    reference: Engine,
    candidate: Engine,
    windows: FloatArray,
    batch_sizes: Sequence[int],
    *,
    seconds: float,
    rounds: int = 3,
    progress: Callable[[str], None] = lambda line: None,
) -> SpeedComparison:
    """Times both engines at each batch size, alternating `rounds` times to share the drift."""
    measured: dict[str, list[BatchSpeed]] = {"reference": [], "candidate": []}
    for size in batch_sizes:
        batch = np.ascontiguousarray(np.resize(windows, (size, windows.shape[1])))
        samples: dict[str, list[float]] = {"reference": [], "candidate": []}
        for engine in (reference, candidate):
            engine.run(batch)  # warm-up: a new shape allocates buffers
        for _ in range(rounds):
            for name, engine in (("reference", reference), ("candidate", candidate)):
                samples[name].extend(_time_batches(engine, batch, seconds / rounds))
        for name, times in samples.items():
            median = statistics.median(times)
            measured[name].append(
                BatchSpeed(size, round(size / median, 1), round(median * 1000, 3))
            )
        progress(
            f"batch {size}: reference {measured['reference'][-1].windows_per_s:.0f} windows/s, "
            f"candidate {measured['candidate'][-1].windows_per_s:.0f} windows/s"
        )
    return SpeedComparison(tuple(measured["reference"]), tuple(measured["candidate"]))
