"""What a benchmark run measured: per-phase figures from raw Locust rows and /metrics deltas.

Everything the gate and the report read lives in `Summary`, written as summary.json.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.ceiling import BatchMeasurement, Ceiling

# Requests that end in the first seconds of a phase are left out of throughput: Locust
# is still starting users then.
WARM_UP_S = 2.0


@dataclass(frozen=True)
class Latency:
    """Latency percentiles in milliseconds, from every sample (not Locust's rounded buckets)."""

    count: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Latency:
        """Percentiles of `samples_ms` (all zeros when empty)."""
        if not samples_ms:
            return cls(0, 0.0, 0.0, 0.0, 0.0)
        values = np.asarray(samples_ms)
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return cls(len(values), float(p50), float(p90), float(p99), float(values.max()))


@dataclass(frozen=True)
class ServerDelta:
    """What the server's /metrics say happened during a phase."""

    windows_computed: float
    batches: float
    mean_batch_size: float
    mean_queue_ms: float
    mean_compute_ms: float
    mean_request_ms: float  # server-side RPC time (mozart_request_duration_seconds)
    cpu_s: float | None  # user + system CPU seconds of the server process


def server_delta(
    before: Mapping[str, float], after: Mapping[str, float], cpu_s: float | None
) -> ServerDelta:
    """The difference of two scrapes of the server's /metrics."""

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    batches = delta("mozart_batch_size_count")
    windows = delta("mozart_batch_size_sum")
    queued = delta("mozart_queue_duration_seconds_count")
    rpcs = delta("mozart_request_duration_seconds_count")
    return ServerDelta(
        windows_computed=windows,
        batches=batches,
        mean_batch_size=windows / batches if batches else 0.0,
        mean_queue_ms=1000 * delta("mozart_queue_duration_seconds_sum") / queued if queued else 0.0,
        mean_compute_ms=(
            1000 * delta("mozart_compute_duration_seconds_sum") / batches if batches else 0.0
        ),
        mean_request_ms=(
            1000 * delta("mozart_request_duration_seconds_sum") / rpcs if rpcs else 0.0
        ),
        cpu_s=cpu_s,
    )


@dataclass(frozen=True)
class PhaseResult:
    """One Locust run at one load."""

    name: str
    user_class: str
    users: int
    seconds: float
    requests: int
    failures: int
    errors: tuple[str, ...]  # a few distinct failure messages
    windows_per_s: float  # windows answered per second in steady state
    latency: Latency  # the phase's own request type (Classify, ModelInfer or stream windows)
    server: ServerDelta

    @property
    def failure_ratio(self) -> float:
        """Failed requests over all requests (1.0 when nothing completed)."""
        return self.failures / self.requests if self.requests else 1.0


def read_raw(
    path: Path, *, name: str, user_class: str, users: int, seconds: float, server: ServerDelta
) -> PhaseResult:
    """Builds a phase's result from the locustfile's raw CSV (one row per request)."""
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    if user_class == "StreamUser":
        measured = [row for row in rows if row["type"] == "window"]
    else:
        measured = rows
    failures = [row for row in rows if row["error"]]
    good = [row for row in measured if not row["error"]]
    windows_per_s = 0.0
    if good:
        ends = [float(row["end_time_s"]) for row in good]
        start, stop = min(ends) + WARM_UP_S, max(ends)
        steady = [row for row in good if float(row["end_time_s"]) > start]
        if stop > start:
            windows_per_s = sum(int(row["windows"]) for row in steady) / (stop - start)
    return PhaseResult(
        name=name,
        user_class=user_class,
        users=users,
        seconds=seconds,
        requests=len(rows),
        failures=len(failures),
        errors=tuple(sorted({row["error"] for row in failures}))[:5],
        windows_per_s=windows_per_s,
        latency=Latency.of([float(row["latency_ms"]) for row in good]),
        server=server,
    )


@dataclass(frozen=True)
class Summary:
    """A whole run: settings, the ceiling, every phase, and the figures the gate checks."""

    started_at: str
    profile: str
    model: str
    clips: str
    hop_ms: int
    server_settings: dict[str, str]
    cpu_count: int
    ceiling: Ceiling  # the mean of the measurements before and after the phases
    phases: tuple[PhaseResult, ...]
    ceiling_before_windows_per_s: float = 0.0
    ceiling_after_windows_per_s: float = 0.0
    server_cpus: str = ""  # CPUs the server and the ceiling were pinned to; "" = unpinned
    load_cpus: str = ""  # CPUs Locust was pinned to
    engine_choice: str = ""  # the `engine` setting for this model: auto, fp32, int8, tensorrt
    # The artifact the server logged it serves the model from ("engine chosen"); the ceiling
    # states its own. "" when the server's log did not say.
    server_artifact: str = ""

    def phases_of(self, user_class: str, prefix: str = "") -> list[PhaseResult]:
        """The phases run with one user class whose names start with `prefix`."""
        return [
            phase
            for phase in self.phases
            if phase.user_class == user_class and phase.name.startswith(prefix)
        ]

    @property
    def windows_per_stream_s(self) -> float:
        """Windows one real-time stream needs per second."""
        return 1000 / self.hop_ms

    @property
    def ceiling_streams(self) -> float:
        """How many real-time streams the ceiling could feed."""
        return self.ceiling.windows_per_s / self.windows_per_stream_s

    @property
    def failure_ratio(self) -> float:
        """Failed requests over all requests of every phase."""
        requests = sum(phase.requests for phase in self.phases)
        failures = sum(phase.failures for phase in self.phases)
        return failures / requests if requests else 1.0

    @property
    def saturation_windows_per_s(self) -> float:
        """The best steady-state throughput of the Classify sweep."""
        return max((p.windows_per_s for p in self.phases_of("UnaryUser", "users-")), default=0.0)

    @property
    def saturation_fraction(self) -> float:
        """Saturation throughput over the ceiling."""
        return self.saturation_windows_per_s / self.ceiling.windows_per_s

    @property
    def median_overhead_ms(self) -> float:
        """Median one-window Classify latency at concurrency 1 minus batch-1 compute."""
        latency = self.phases_of("UnaryUser", "overhead")
        if not latency:
            return float("inf")
        return latency[0].latency.median_ms - self.ceiling.batch1_median_ms

    def stream_p99_ms(self, streams: int) -> float:
        """p99 window latency of the run with `streams` real-time streams (inf if not run)."""
        for phase in self.phases_of("StreamUser", "streams-"):
            if phase.users == streams:
                return phase.latency.p99_ms
        return float("inf")

    def sustained_streams(self, p99_limit_ms: float) -> int:
        """The most streams run with no failure and p99 window latency within the limit."""
        return max(
            (
                phase.users
                for phase in self.phases_of("StreamUser", "streams-")
                if phase.failures == 0 and phase.latency.p99_ms <= p99_limit_ms
            ),
            default=0,
        )

    def write(self, path: Path) -> None:
        """Writes summary.json."""
        data = asdict(self)
        data["derived"] = {
            "ceiling_windows_per_s": self.ceiling.windows_per_s,
            "batch1_median_ms": self.ceiling.batch1_median_ms,
            "saturation_windows_per_s": self.saturation_windows_per_s,
            "saturation_fraction": self.saturation_fraction,
            "median_overhead_ms": self.median_overhead_ms,
            "failure_ratio": self.failure_ratio,
            "ceiling_streams": self.ceiling_streams,
        }
        path.write_text(json.dumps(data, indent=2))

    @classmethod
    def read(cls, path: Path) -> Summary:
        """Reads summary.json."""
        data: dict[str, Any] = json.loads(path.read_text())
        data.pop("derived", None)
        ceiling = dict(data["ceiling"])
        ceiling["batches"] = tuple(BatchMeasurement(**batch) for batch in ceiling["batches"])
        data["ceiling"] = Ceiling(**ceiling)
        phases = []
        for stored in data["phases"]:
            phase = dict(stored)
            phase["latency"] = Latency(**phase["latency"])
            phase["server"] = ServerDelta(**phase["server"])
            phase["errors"] = tuple(phase["errors"])
            phases.append(PhaseResult(**phase))
        data["phases"] = tuple(phases)
        return cls(**data)
