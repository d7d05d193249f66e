"""The release gate: a run's summary.json against the thresholds in benchmarks/gates.toml.

    python -m benchmarks.gate benchmarks/results/<run>/summary.json [--table targets]

Prints one row per threshold (threshold, measured, pass/fail) and exits 1 when any fails.
"""

from __future__ import annotations

import argparse
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from benchmarks.results import Summary

GATES_FILE = Path(__file__).with_name("gates.toml")


class Thresholds(BaseModel):
    """One table of gates.toml; every figure is relative to the same run's ceiling."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_failure_ratio: float = Field(ge=0, le=1)
    min_saturation_fraction: float = Field(gt=0)
    max_median_overhead_ms: float = Field(gt=0)
    streams: int = Field(ge=1)
    max_stream_p99_ms: float = Field(gt=0)


@dataclass(frozen=True)
class Check:
    """One row of the gate's table."""

    name: str
    threshold: str
    measured: str
    passed: bool


def load_thresholds(path: Path, table: str) -> Thresholds:
    """Reads one table (`gate` or `targets`) of a gates file."""
    with path.open("rb") as file:
        return Thresholds.model_validate(tomllib.load(file)[table])


def evaluate(summary: Summary, thresholds: Thresholds) -> list[Check]:
    """Checks the summary against every threshold."""
    failure = summary.failure_ratio
    saturation = summary.saturation_fraction
    overhead = summary.median_overhead_ms
    p99 = summary.stream_p99_ms(thresholds.streams)
    return [
        Check(
            "failure ratio (all phases)",
            f"<= {thresholds.max_failure_ratio:g}",
            f"{failure:.4f}",
            failure <= thresholds.max_failure_ratio,
        ),
        Check(
            "saturation throughput / ceiling",
            f">= {thresholds.min_saturation_fraction:g}",
            f"{saturation:.3f} ({summary.saturation_windows_per_s:.0f} / "
            f"{summary.ceiling.windows_per_s:.0f} windows/s)",
            saturation >= thresholds.min_saturation_fraction,
        ),
        Check(
            "median overhead over batch-1 compute, concurrency 1",
            f"<= {thresholds.max_median_overhead_ms:g} ms",
            f"{overhead:.2f} ms (batch-1 compute {summary.ceiling.batch1_median_ms:.2f} ms)",
            math.isfinite(overhead) and overhead <= thresholds.max_median_overhead_ms,
        ),
        Check(
            f"p99 window latency, {thresholds.streams} real-time streams",
            f"<= {thresholds.max_stream_p99_ms:g} ms",
            f"{p99:.1f} ms" if math.isfinite(p99) else "not run",
            p99 <= thresholds.max_stream_p99_ms,
        ),
    ]


def format_checks(checks: Sequence[Check], title: str) -> str:
    """The table the gate prints."""
    width = max(len(check.name) for check in checks)
    lines = [title, f"{'check':<{width}}  {'threshold':<12}  {'result':<6}  measured"]
    for check in checks:
        verdict = "pass" if check.passed else "FAIL"
        lines.append(
            f"{check.name:<{width}}  {check.threshold:<12}  {verdict:<6}  {check.measured}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Prints the gate table for a summary; returns 1 when a threshold fails."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gate", description=__doc__)
    parser.add_argument("summary", type=Path, help="summary.json of a run")
    parser.add_argument("--gates", type=Path, default=GATES_FILE)
    parser.add_argument("--table", default="gate", help="gate (CI) or targets (product goals)")
    args = parser.parse_args(argv)
    checks = evaluate(Summary.read(args.summary), load_thresholds(args.gates, args.table))
    print(format_checks(checks, f"{args.table} ({args.gates}) for {args.summary}"))
    return 0 if all(check.passed for check in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
