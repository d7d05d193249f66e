"""The compute ceiling: the served model run in-process, on the engine the server would use.

The engine is the server's own, built by its EngineFactory from the same `ServerSettings`: the
same artifact (`engine` = auto|fp32|int8|tensorrt picks model.onnx or one that model.json lists)
and the same engine settings (threads, spinning, graph optimization, instances). So the ceiling
differs from the server only by everything the server adds: gRPC, decoding, windowing, batching.

    python -m benchmarks.ceiling --model-repository models --model composer-cnn [--engine int8]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mozart_server.engines import Engine, EngineFactory
from mozart_server.engines.artifacts import ONNXRUNTIME, REFERENCE
from mozart_server.models.manifest import read_manifest
from mozart_server.models.repository import VersionDir, discover
from mozart_server.settings import EngineChoice, ServerSettings, VersionPolicy

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class BatchMeasurement:
    """Throughput and latency of one batch size."""

    batch_size: int
    windows_per_s: float
    median_ms: float
    p99_ms: float
    runs: int


@dataclass(frozen=True)
class Ceiling:
    """The model's own compute ceiling on this machine, now."""

    model: str
    version: str
    window_samples: int
    sample_rate_hz: int
    instances: int  # batches the engine runs at once (ONNX sessions or TensorRT contexts)
    intra_op_threads: int | None  # ONNX Runtime's setting; None for other engine kinds
    batches: tuple[BatchMeasurement, ...]
    # What was measured: the engine's own account of itself. The defaults describe runs
    # recorded before a version could list artifacts: all of them ran model.onnx on CPU.
    artifact: str = REFERENCE.file
    precision: str = REFERENCE.precision
    engine_kind: str = ONNXRUNTIME
    device: str = "cpu"

    @property
    def best(self) -> BatchMeasurement:
        """The batch size with the highest throughput."""
        return max(self.batches, key=lambda batch: batch.windows_per_s)

    @property
    def windows_per_s(self) -> float:
        """The ceiling: the best throughput over all batch sizes."""
        return self.best.windows_per_s

    @property
    def batch1_median_ms(self) -> float:
        """Median compute time of one window alone."""
        return next(batch.median_ms for batch in self.batches if batch.batch_size == 1)


def find_version(settings: ServerSettings, model: str) -> VersionDir:
    """The newest version of `model` in the settings' repository (as the server would load it).

    Raises:
        LookupError: the repository has no such model.
    """
    found = [
        version
        for version in discover(settings.repository.model_repository, VersionPolicy.LATEST, 1, ())
        if version.name == model
    ]
    if not found:
        raise LookupError(f"model {model!r} is not in {settings.repository.model_repository}")
    return found[-1]


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _measure(engine: Engine, batch: np.ndarray, seconds: float, instances: int) -> BatchMeasurement:
    """Runs `batch` on `instances` threads for `seconds`, as the server's batcher would."""
    latencies_s: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def loop() -> None:
        mine = []
        while True:  # at least one run, however late a loaded machine starts this thread
            started = time.perf_counter()
            engine.run(batch)
            mine.append(time.perf_counter() - started)
            if time.perf_counter() >= stop_at:
                break
        with lock:
            latencies_s.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=loop) for _ in range(instances)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return BatchMeasurement(
        batch_size=int(batch.shape[0]),
        windows_per_s=len(latencies_s) * batch.shape[0] / elapsed,
        median_ms=statistics.median(latencies_s) * 1000,
        p99_ms=_percentile(latencies_s, 0.99) * 1000,
        runs=len(latencies_s),
    )


def measure_ceiling(
    settings: ServerSettings,
    model: str,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    seconds_per_batch: float = 2.0,
) -> Ceiling:
    """Measures windows/s and latency for each batch size with the server's engine settings."""
    version = find_version(settings, model)
    manifest = read_manifest(version)
    engine = EngineFactory(settings.engine).create(manifest.name, version.path, manifest.artifacts)
    instances = engine.instances  # read before close(), which drops the sessions it counts
    rng = np.random.default_rng(0)
    measurements = []
    try:
        for size in batch_sizes:
            batch = (rng.standard_normal((size, manifest.window_samples)) * 0.1).astype(np.float32)
            engine.run(batch)  # warm-up: ORT allocates buffers for a new shape
            measurements.append(_measure(engine, batch, seconds_per_batch, instances))
    finally:
        engine.close()
    return Ceiling(
        model=manifest.name,
        version=manifest.version,
        window_samples=manifest.window_samples,
        sample_rate_hz=manifest.sample_rate_hz,
        instances=instances,
        # Thread settings are ONNX Runtime's; another kind's engine does not read them.
        intra_op_threads=(
            settings.engine.onnx.intra_op_threads if engine.kind == ONNXRUNTIME else None
        ),
        batches=tuple(measurements),
        artifact=engine.artifact.file,
        precision=engine.artifact.precision,
        engine_kind=engine.kind,
        device=engine.device,
    )


def combine(first: Ceiling, second: Ceiling) -> Ceiling:
    """Averages two measurements of the same model (before and after the load phases).

    The machine's load drifts during a run; the mean of both ends is a fairer reference for
    the phases in between than either end alone.

    Raises:
        ValueError: the two measured different models, artifacts or engines.
    """
    if replace(first, batches=()) != replace(second, batches=()):
        raise ValueError(
            f"cannot average two different measurements: {first.model} v{first.version} "
            f"{describe_engine(first)} and {second.model} v{second.version} "
            f"{describe_engine(second)}"
        )
    batches = tuple(
        BatchMeasurement(
            batch_size=a.batch_size,
            windows_per_s=(a.windows_per_s + b.windows_per_s) / 2,
            median_ms=(a.median_ms + b.median_ms) / 2,
            p99_ms=max(a.p99_ms, b.p99_ms),
            runs=a.runs + b.runs,
        )
        for a, b in zip(first.batches, second.batches, strict=True)
    )
    return replace(first, batches=batches)


def describe_engine(ceiling: Ceiling) -> str:
    """What was measured, in one line: artifact, precision, engine kind, device, parallelism."""
    threads = (
        "" if ceiling.intra_op_threads is None else f", intra_op_threads={ceiling.intra_op_threads}"
    )
    return (
        f"{ceiling.artifact} ({ceiling.precision}, {ceiling.engine_kind} on {ceiling.device}; "
        f"instances={ceiling.instances}{threads})"
    )


def format_ceiling(ceiling: Ceiling) -> str:
    """A plain-text table of the measurement."""
    lines = [
        f"ceiling of {ceiling.model} v{ceiling.version}: {describe_engine(ceiling)}",
        f"{'batch':>6} {'windows/s':>10} {'median ms':>10} {'p99 ms':>8} {'runs':>6}",
    ]
    for batch in ceiling.batches:
        lines.append(
            f"{batch.batch_size:>6} {batch.windows_per_s:>10.1f} {batch.median_ms:>10.2f} "
            f"{batch.p99_ms:>8.2f} {batch.runs:>6}"
        )
    lines.append(
        f"best: {ceiling.windows_per_s:.1f} windows/s at batch {ceiling.best.batch_size}; "
        f"batch-1 median {ceiling.batch1_median_ms:.2f} ms"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Prints the ceiling of one model; engine settings come from MOZART_* variables."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling", description=__doc__)
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="composer-cnn")
    parser.add_argument("--seconds-per-batch", type=float, default=2.0)
    parser.add_argument(
        "--batch-sizes", default=",".join(map(str, BATCH_SIZES)), help="comma-separated"
    )
    parser.add_argument(
        "--engine",
        choices=[choice.value for choice in EngineChoice],
        help="the engine choice to measure (default: MOZART_ENGINE, else auto)",
    )
    args = parser.parse_args(argv)
    chosen = {} if args.engine is None else {"engine": args.engine}
    settings = ServerSettings(model_repository=args.model_repository, **chosen)
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    print(format_ceiling(measure_ceiling(settings, args.model, sizes, args.seconds_per_batch)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
