"""Engines side by side: one run's summary of each engine, and each one's ratios to the first.

`python -m benchmarks.run --engines fp32,int8` measures every engine in the same run, so the
ratios hold on this machine now even though its absolute times do not carry over. The first
engine listed is the baseline: a ratio is the other engine's figure over the baseline's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.results import Summary


def ratio(value: float, baseline: float) -> float | None:
    """`value / baseline`, or None when the baseline is zero (a phase that answered nothing)."""
    return value / baseline if baseline else None


@dataclass(frozen=True)
class PhaseFigures:
    """What one engine's server did in one phase."""

    name: str
    windows_per_s: float
    median_ms: float
    p99_ms: float


@dataclass(frozen=True)
class EngineFigures:
    """One engine's headline figures; its whole summary is in `summary`."""

    engine: str  # the engine choice, e.g. "int8"
    summary: str  # its summary.json, relative to the run's folder
    artifact: str
    precision: str
    engine_kind: str
    device: str
    instances: int
    intra_op_threads: int | None
    server_artifact: str
    ceiling_windows_per_s: float
    ceiling_best_batch_size: int
    batch1_median_ms: float
    phases: tuple[PhaseFigures, ...]

    @classmethod
    def of(cls, summary: Summary) -> EngineFigures:
        """The figures of one engine's summary (stored in the folder named after its engine)."""
        ceiling = summary.ceiling
        return cls(
            engine=summary.engine_choice,
            summary=f"{summary.engine_choice}/summary.json",
            artifact=ceiling.artifact,
            precision=ceiling.precision,
            engine_kind=ceiling.engine_kind,
            device=ceiling.device,
            instances=ceiling.instances,
            intra_op_threads=ceiling.intra_op_threads,
            server_artifact=summary.server_artifact,
            ceiling_windows_per_s=ceiling.windows_per_s,
            ceiling_best_batch_size=ceiling.best.batch_size,
            batch1_median_ms=ceiling.batch1_median_ms,
            phases=tuple(
                PhaseFigures(
                    phase.name, phase.windows_per_s, phase.latency.median_ms, phase.latency.p99_ms
                )
                for phase in summary.phases
            ),
        )


@dataclass(frozen=True)
class PhaseRatio:
    """One phase: an engine's served windows/s and median latency over the baseline's."""

    name: str
    windows_per_s: float | None
    median_ms: float | None


@dataclass(frozen=True)
class Ratios:
    """One engine's figures over the baseline's, from the same run.

    Latency ratios below 1 and throughput ratios above 1 mean the engine is faster. (The
    `batch1_latency_ratio` that model.json records is the other way up: FP32's over the
    artifact's.)
    """

    engine: str
    baseline: str
    ceiling_windows_per_s: float | None
    batch1_median_ms: float | None
    phases: tuple[PhaseRatio, ...]

    @classmethod
    def of(cls, figures: EngineFigures, baseline: EngineFigures) -> Ratios:
        """The ratios of `figures` to `baseline`, phase by phase."""
        return cls(
            engine=figures.engine,
            baseline=baseline.engine,
            ceiling_windows_per_s=ratio(
                figures.ceiling_windows_per_s, baseline.ceiling_windows_per_s
            ),
            batch1_median_ms=ratio(figures.batch1_median_ms, baseline.batch1_median_ms),
            phases=tuple(
                PhaseRatio(
                    phase.name,
                    ratio(phase.windows_per_s, base.windows_per_s),
                    ratio(phase.median_ms, base.median_ms),
                )
                for phase, base in zip(figures.phases, baseline.phases, strict=True)
            ),
        )


@dataclass(frozen=True)
class Comparison:
    """Every engine of one run; the first is the baseline of the ratios."""

    summaries: tuple[Summary, ...]

    def __post_init__(self) -> None:
        """Checks that there is something to compare, measured the same way.

        Raises:
            ValueError: fewer than two engines, an engine twice, or different phases.
        """
        engines = [summary.engine_choice for summary in self.summaries]
        if len(engines) < 2 or len(set(engines)) != len(engines):
            raise ValueError(f"a comparison needs two or more distinct engines, got {engines}")
        names = [[phase.name for phase in summary.phases] for summary in self.summaries]
        if any(other != names[0] for other in names[1:]):
            raise ValueError(f"the engines ran different phases: {names}")

    @property
    def figures(self) -> tuple[EngineFigures, ...]:
        """Each engine's figures, the baseline first."""
        return tuple(EngineFigures.of(summary) for summary in self.summaries)

    @property
    def ratios(self) -> tuple[Ratios, ...]:
        """Each engine after the first, over the first."""
        baseline, *others = self.figures
        return tuple(Ratios.of(figures, baseline) for figures in others)

    def write(self, path: Path) -> None:
        """Writes comparison.json: each engine's figures and the ratios to the baseline."""
        first = self.summaries[0]
        data = {
            "started_at": first.started_at,
            "profile": first.profile,
            "model": first.model,
            "baseline": first.engine_choice,
            "engines": [asdict(figures) for figures in self.figures],
            "ratios": [asdict(ratios) for ratios in self.ratios],
        }
        path.write_text(json.dumps(data, indent=2))
