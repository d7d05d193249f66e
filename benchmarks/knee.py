"""The stream knee: real-time streams added in steps until p99 window latency crosses the bound.

Each step runs N real-time streams (100 ms chunks of PCM, a 1 s hop over the model's
window) for a fixed time against one server; the ramp stops at the first step whose p99
window latency is above the bound (gates.toml's target, 100 ms) or that has a failure,
then runs one step halfway back to narrow the gap. The knee is the largest count that held
before the first crossing. Every step records the load generator's CPU beside the server's,
because Locust shares the machine: a knee where Locust ran out of CPU is Locust's, not the
server's, and the report shows both.

    python -m benchmarks.knee plot results/<a>/summary.json results/<b>/summary.json -o knee.png
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display here or in CI

import matplotlib.pyplot as plt

#: Stream counts tried in order until one crosses the bound.
STEPS = (25, 50, 100, 150, 200, 250, 300, 350, 400, 500, 600, 800, 1000)
KNEE_HOP_MS = 1000  # the streams: a window every second
STREAMS_PER_LOAD_PROCESS = 75  # above this, Locust's users are split over processes


@dataclass(frozen=True)
class KneeStep:
    """One step of the ramp: N streams for a while, and what they measured."""

    streams: int
    seconds: float
    windows: int  # windows answered
    failures: int
    p50_ms: float
    p99_ms: float
    windows_per_s: float
    load_processes: int
    load_cpu_s: float | None  # Locust's CPU seconds in the step (all its processes)
    server_cpu_s: float | None  # the server process's CPU seconds in the step
    # The machine's 1-minute load average at the step's end: what else was running (the
    # machine is shared; a knee measured at a load average far above its cores says so).
    load_average: float | None = None
    # The share of windows the server itself answered within the bound (its own histogram,
    # from the chunk's arrival to the result's send): near 1 while the client's p99 is far
    # above the bound means the time went outside the server (the client, the OS).
    server_within_bound: float | None = None

    def held(self, bound_ms: float) -> bool:
        """Answered windows, none failed, p99 within the bound."""
        return self.windows > 0 and self.failures == 0 and self.p99_ms <= bound_ms

    @property
    def load_cores(self) -> float | None:
        """The load generator's mean CPU use in cores."""
        return None if self.load_cpu_s is None else self.load_cpu_s / self.seconds

    @property
    def server_cores(self) -> float | None:
        """The server's mean CPU use in cores."""
        return None if self.server_cpu_s is None else self.server_cpu_s / self.seconds


@dataclass(frozen=True)
class Knee:
    """A whole ramp: its steps in the order run, the bound, and the knee it found."""

    model: str
    bound_ms: float
    hop_ms: int
    steps: tuple[KneeStep, ...]
    ceiling_streams: float  # ceiling windows/s over the windows one stream needs per second

    @property
    def knee(self) -> int:
        """The largest stream count that held, among the counts below the first crossing."""
        crossed = self.crossed_at
        held = [
            step.streams
            for step in self.steps
            if step.held(self.bound_ms) and (crossed is None or step.streams < crossed)
        ]
        return max(held, default=0)

    @property
    def crossed_at(self) -> int | None:
        """The smallest stream count that crossed the bound (None: the ramp never crossed)."""
        crossed = [step.streams for step in self.steps if not step.held(self.bound_ms)]
        return min(crossed, default=None)

    def describe(self) -> str:
        """One line: the knee, where the ramp crossed, and the ceiling's stream count."""
        crossed = self.crossed_at
        beyond = (
            f"{crossed} streams crossed it"
            if crossed is not None
            else "the ramp never crossed it (the knee is the most run, not a limit found)"
        )
        return (
            f"knee of {self.model}: {self.knee} real-time streams at p99 <= {self.bound_ms:g} ms "
            f"(hop {self.hop_ms} ms, 100 ms chunks); {beyond}; the ceiling's count "
            f"{self.ceiling_streams:.0f}"
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Knee:
        """Reads the form summary.json stores (dataclasses.asdict)."""
        fields = dict(data)
        fields.pop("knee", None)
        fields.pop("crossed_at", None)
        fields["steps"] = tuple(KneeStep(**step) for step in fields["steps"])
        return cls(**fields)


def load_processes(streams: int, per_process: int = STREAMS_PER_LOAD_PROCESS) -> int:
    """How many Locust processes carry `streams` streams (one per `per_process`, at least 1)."""
    return max(1, math.ceil(streams / per_process))


def refine(held: int, crossed: int) -> int | None:
    """The count halfway between the last that held and the first that crossed, or None.

    Rounded to a multiple of 10 (5 below 50); None when no such count lies in between.
    """
    grain = 5 if crossed <= 50 else 10
    middle = round((held + crossed) / 2 / grain) * grain
    return middle if held < middle < crossed else None


def ramp(
    measure: Callable[[int], KneeStep],
    bound_ms: float,
    steps: Sequence[int] = STEPS,
    say: Callable[[str], None] = print,
) -> list[KneeStep]:
    """Runs `measure` at each count until one crosses the bound, then once in between.

    Returns the steps in the order run (the refining step last).
    """
    done: list[KneeStep] = []
    for streams in steps:
        step = measure(streams)
        done.append(step)
        say(_progress(step, bound_ms))
        if not step.held(bound_ms):
            held = max((s.streams for s in done if s.held(bound_ms)), default=0)
            middle = refine(held, streams)
            if middle is not None:
                step = measure(middle)
                done.append(step)
                say(_progress(step, bound_ms))
            break
    return done


def _cores(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _progress(step: KneeStep, bound_ms: float) -> str:
    verdict = "holds" if step.held(bound_ms) else "CROSSES"
    return (
        f"    {step.streams} streams: p50 {step.p50_ms:.1f} ms, p99 {step.p99_ms:.1f} ms "
        f"({verdict} {bound_ms:g} ms), {step.windows} windows, {step.failures} failed; "
        f"server {_cores(step.server_cores)} cores, Locust {_cores(step.load_cores)} cores "
        f"in {step.load_processes} process(es); load average {_cores(step.load_average)}; "
        f"server-side within the bound: {_share(step.server_within_bound)}"
    )


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def knee_table(knee: Knee) -> list[str]:
    """The ramp as a markdown table, in stream order."""
    lines = [
        "| streams | p50 ms | p99 ms | held | windows | failures | windows/s | server cores "
        "| Locust cores (processes) | load average | server-side within bound |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for step in sorted(knee.steps, key=lambda step: step.streams):
        lines.append(
            f"| {step.streams} | {step.p50_ms:.1f} | {step.p99_ms:.1f} | "
            f"{'yes' if step.held(knee.bound_ms) else 'no'} | {step.windows} | {step.failures} | "
            f"{step.windows_per_s:.1f} | {_cores(step.server_cores)} | "
            f"{_cores(step.load_cores)} ({step.load_processes}) | {_cores(step.load_average)} | "
            f"{_share(step.server_within_bound)} |"
        )
    return lines


def plot_knees(knees: Sequence[Knee], path: Path) -> None:
    """p50 and p99 window latency against streams, one colour per model, the bound dashed."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for number, knee in enumerate(knees):
        colour = f"C{number}"
        steps = sorted(knee.steps, key=lambda step: step.streams)
        counts = [step.streams for step in steps]
        axis.plot(counts, [s.p99_ms for s in steps], marker="o", color=colour,
                  label=f"{knee.model} p99 (knee {knee.knee})")  # fmt: skip
        axis.plot(counts, [s.p50_ms for s in steps], marker=".", linestyle=":", color=colour,
                  label=f"{knee.model} p50")  # fmt: skip
        if knee.knee:
            axis.axvline(knee.knee, color=colour, alpha=0.3)
    bound = knees[0].bound_ms if knees else 100.0
    axis.axhline(bound, color="grey", linestyle="--", label=f"bound {bound:g} ms")
    axis.set_yscale("log")
    axis.set_xlabel("real-time streams (1 s hop, 100 ms chunks)")
    axis.set_ylabel("window latency (ms)")
    axis.set_title("stream knee: p99 window latency against streams")
    axis.legend(fontsize="small", loc="center right")
    axis.grid(True, alpha=0.3, which="both")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    """`plot`: draws the knees of several runs' summary.json on one figure."""
    from benchmarks.results import Summary  # noqa: PLC0415 - results imports this module

    parser = argparse.ArgumentParser(prog="python -m benchmarks.knee", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    plotting = commands.add_parser("plot", help="one figure of the knees of several runs")
    plotting.add_argument("summaries", nargs="+", type=Path)
    plotting.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args(argv)
    knees = []
    for path in args.summaries:
        knee = Summary.read(path).knee
        if knee is None:
            parser.error(f"{path} has no knee (run with --profile full or knee)")
        knees.append(knee)
        print(knee.describe())
    plot_knees(knees, args.out)
    print(f"plot: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
