"""What a benchmark run measured: per-phase figures from raw Locust rows and /metrics deltas.

Everything the gate and the report read lives in `Summary`, written as summary.json.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.ceiling import BatchMeasurement, Ceiling
from benchmarks.knee import Knee

# Requests that end in the first seconds of a phase are left out of throughput: Locust
# is still starting users then (at most a quarter of the span the phase answered in).
WARM_UP_S = 2.0
STREAM_WINDOW_LATENCY = "mozart_stream_window_latency_seconds"


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
    # The server's own stream window latency (mozart_stream_window_latency_seconds, chunk
    # arrival to result send): windows at or under each bucket bound, by bound in seconds.
    # Empty when the server has no such metric (a baseline older than it).
    stream_window_buckets: dict[str, float] = field(default_factory=dict)

    def share_of_stream_windows_within(self, bound_ms: float) -> float | None:
        """The share of stream windows the server answered within the largest bucket bound
        at or under `bound_ms` (None without the metric or windows)."""
        total = self.stream_window_buckets.get("+Inf", 0.0)
        bounds = [b for b in self.stream_window_buckets if b != "+Inf"]
        under = [b for b in bounds if float(b) * 1000 <= bound_ms + 1e-9]
        if not total or not under:
            return None
        return self.stream_window_buckets[max(under, key=float)] / total


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
    prefix = f'{STREAM_WINDOW_LATENCY}_bucket{{le="'
    buckets = {name[len(prefix) : -2]: delta(name) for name in after if name.startswith(prefix)}
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
        stream_window_buckets=buckets,
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
    load_cpu_s: float | None = None  # CPU seconds of the load generator (Locust) in the phase

    @property
    def failure_ratio(self) -> float:
        """Failed requests over all requests (1.0 when nothing completed)."""
        return self.failures / self.requests if self.requests else 1.0


def read_raw(
    path: Path | Sequence[Path],
    *,
    name: str,
    user_class: str,
    users: int,
    seconds: float,
    server: ServerDelta,
    load_cpu_s: float | None = None,
) -> PhaseResult:
    """Builds a phase's result from the locustfile's raw CSV (one row per request).

    Given several CSVs (repeats of one phase), latency comes from all their requests
    together and throughput is the mean of each one's steady-state throughput.
    """
    paths = [path] if isinstance(path, Path) else list(path)
    all_rows: list[dict[str, str]] = []
    rates = []
    for one in paths:
        with one.open(newline="") as file:
            rows = list(csv.DictReader(file))
        all_rows += rows
        rates.append(_steady_windows_per_s(rows, user_class))
    measured = _measured(all_rows, user_class)
    failures = [row for row in all_rows if row["error"]]
    good = [row for row in measured if not row["error"]]
    return PhaseResult(
        name=name,
        user_class=user_class,
        users=users,
        seconds=seconds,
        requests=len(all_rows),
        failures=len(failures),
        errors=tuple(sorted({row["error"] for row in failures}))[:5],
        windows_per_s=float(np.mean(rates)) if rates else 0.0,
        latency=Latency.of([float(row["latency_ms"]) for row in good]),
        server=server,
        load_cpu_s=load_cpu_s,
    )


def _measured(rows: list[dict[str, str]], user_class: str) -> list[dict[str, str]]:
    """The rows a phase's latency is of: stream windows for streams, every request otherwise."""
    if user_class == "StreamUser":
        return [row for row in rows if row["type"] == "window"]
    return rows


def _steady_windows_per_s(rows: list[dict[str, str]], user_class: str) -> float:
    """Windows answered per second after the warm-up, from one run's rows."""
    good = [row for row in _measured(rows, user_class) if not row["error"]]
    if not good:
        return 0.0
    ends = [float(row["end_time_s"]) for row in good]
    # The warm-up is at most a quarter of the span answered: a short phase on a loaded
    # machine, whose users started late, still has a steady part to measure.
    warm_up = min(WARM_UP_S, (max(ends) - min(ends)) / 4)
    start, stop = min(ends) + warm_up, max(ends)
    steady = [row for row in good if float(row["end_time_s"]) > start]
    if stop <= start:
        return 0.0
    return sum(int(row["windows"]) for row in steady) / (stop - start)


def merge_deltas(deltas: Sequence[ServerDelta]) -> ServerDelta:
    """The server's figures over several repeats of a phase: totals summed, means weighted."""
    windows = sum(delta.windows_computed for delta in deltas)
    batches = sum(delta.batches for delta in deltas)

    def weighted(field: str) -> float:
        total = sum(getattr(delta, field) * delta.batches for delta in deltas)
        return total / batches if batches else 0.0

    cpus = [delta.cpu_s for delta in deltas]
    return ServerDelta(
        windows_computed=windows,
        batches=batches,
        mean_batch_size=windows / batches if batches else 0.0,
        mean_queue_ms=weighted("mean_queue_ms"),
        mean_compute_ms=weighted("mean_compute_ms"),
        mean_request_ms=weighted("mean_request_ms"),
        cpu_s=None if any(cpu is None for cpu in cpus) else sum(c for c in cpus if c is not None),
        stream_window_buckets={
            bound: sum(delta.stream_window_buckets.get(bound, 0.0) for delta in deltas)
            for bound in deltas[0].stream_window_buckets
        }
        if deltas
        else {},
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
    knee: Knee | None = None  # the stream ramp (full and knee profiles)
    # The mozart_server package the server process imported (its own log line).
    server_module: str = ""

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
        """p99 window latency of the run with `streams` real-time streams.

        inf if it did not run or answered no window: nothing measured is not fast.
        """
        for phase in self.phases_of("StreamUser", "streams-"):
            if phase.users == streams and phase.latency.count:
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
            "knee_streams": None if self.knee is None else self.knee.knee,
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
        if data.get("knee") is not None:
            data["knee"] = Knee.from_dict(data["knee"])
        return cls(**data)
