"""`make bench-gate`: the candidate against the baseline in one run, ABBA, then the floors.

Two servers run side by side on the same model: the candidate (this working tree, or
`--candidate-src DIR`) and the baseline (benchmarks/baseline.py chooses and checks it
out), each from its own source tree on the same venv's dependencies. Each figure's phase
runs four times, candidate, baseline, baseline, candidate, so the machine's drift weighs
on both alike and each side has a repeat whose spread is this run's noise:

- saturation: windows/s at 16 `Classify` users;
- overhead: the median one-window `Classify` at concurrency 1, over batch-1 compute;
- stream p99: p99 window latency at a fixed count of real-time streams.

One ceiling, measured before the servers start, serves both (it is the model's, not the
server's). The absolute floors of gates.toml's [gate] table stay as a backstop, on the
candidate's figures (its repeats pooled). Phases are short (4-9 s) so that the twelve
runs and two servers fit `make bench-gate` in under 3 minutes; ModelInfer is left to
`make bench` and the tests.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.baseline import (
    Baseline,
    BaselineRules,
    Figure,
    Verdict,
    decide,
    format_verdicts,
)
from benchmarks.ceiling import Ceiling, format_ceiling, measure_ceiling
from benchmarks.cpus import pinned
from benchmarks.engines import EngineUnderTest
from benchmarks.gate import Thresholds, evaluate, format_checks
from benchmarks.phases import Load, Phase, measure_phase, say
from benchmarks.report import write_report
from benchmarks.results import PhaseResult, Summary, merge_deltas, read_raw
from benchmarks.server_process import RunningServer, server_process

ORDER = ("candidate", "baseline", "baseline", "candidate")
CEILING_SECONDS_PER_BATCH = 0.3
STREAM_SECONDS = 12.0


def gate_phases(rules: BaselineRules) -> tuple[Phase, ...]:
    """The three compared phases, short: each runs four times."""
    return (
        Phase("overhead", "UnaryUser", 1, 5, "single-window"),
        Phase("users-16", "UnaryUser", 16, 5),
        Phase(
            f"streams-{rules.streams}", "StreamUser", rules.streams, 9, hop_ms=rules.stream_hop_ms
        ),
    )


@dataclass(frozen=True)
class Side:
    """One server of the pair: its name, source tree and what it said it imported."""

    name: str
    source: Path
    server: RunningServer


def _check_source(side: Side) -> None:
    """The server imported mozart_server from its own tree, or the comparison means nothing.

    Raises:
        RuntimeError: it imported another tree's (or said nothing).
    """
    expected = (side.source / "server").resolve()
    imported = Path(side.server.module_file).resolve() if side.server.module_file else None
    if imported is None or not imported.is_relative_to(expected):
        raise RuntimeError(
            f"the {side.name} server imported mozart_server from {imported}, not from {expected}"
        )


def _pool(runs: list[tuple[PhaseResult, Path]], phase: Phase) -> PhaseResult:
    """One side's repeats of a phase as one result: latency pooled, throughput averaged."""
    results = [result for result, _ in runs]
    cpus = [result.load_cpu_s for result in results]
    return read_raw(
        [path for _, path in runs],
        name=phase.name,
        user_class=phase.user_class,
        users=phase.users,
        seconds=phase.seconds * len(runs),
        server=merge_deltas([result.server for result in results]),
        load_cpu_s=None if None in cpus else sum(cpu for cpu in cpus if cpu is not None),
    )


def figures(
    runs: dict[str, dict[str, list[PhaseResult]]], rules: BaselineRules, ceiling: Ceiling
) -> list[Figure]:
    """The compared figures, each side's repeats in the order they ran."""
    compute = ceiling.batch1_median_ms

    def values(phase: str, side: str, field: str) -> tuple[float, ...]:
        # A repeat that answered nothing measured nothing: it is left out, not read as 0.
        results = [result for result in runs[side][phase] if result.latency.count]
        if field == "windows_per_s":
            return tuple(result.windows_per_s for result in results)
        if field == "overhead":
            return tuple(result.latency.median_ms - compute for result in results)
        return tuple(result.latency.p99_ms for result in results)

    streams = f"streams-{rules.streams}"
    return [
        Figure("saturation, 16 Classify users", "windows/s", True,
               values("users-16", "candidate", "windows_per_s"),
               values("users-16", "baseline", "windows_per_s")),
        Figure("overhead at concurrency 1", "ms", False,
               values("overhead", "candidate", "overhead"),
               values("overhead", "baseline", "overhead")),
        Figure(f"p99 window latency, {rules.streams} streams", "ms", False,
               values(streams, "candidate", "p99"), values(streams, "baseline", "p99")),
    ]  # fmt: skip


def verdicts(found: list[Figure], rules: BaselineRules) -> list[Verdict]:
    """Each figure's decision under its own rule."""
    ruled = (rules.saturation, rules.overhead, rules.stream_p99)
    return [
        decide(figure, rule, rules.spread_factor) for figure, rule in zip(found, ruled, strict=True)
    ]


@dataclass(frozen=True)
class GateRun:
    """Everything one `--gate` run against a baseline needs."""

    args: argparse.Namespace
    engine: EngineUnderTest
    baseline: Baseline
    rules: BaselineRules
    floors: Thresholds
    targets: Thresholds
    hop_ms: int
    folder: Path
    started_at: str


def _measure(
    phase: Phase, title: str, side: Side, *, load: Load, folder: Path, ceiling: Ceiling
) -> PhaseResult:
    """One repeat of a phase; run again once if it answered nothing (Locust started late)."""
    for attempt in (1, 2):
        result = measure_phase(
            phase,
            title=title if attempt == 1 else f"{title}, again",
            server=side.server,
            load=load,
            folder=folder,
            ceiling_windows_per_s=ceiling.windows_per_s,
        )
        if result.latency.count:
            break
        say(f"    {phase.name} answered nothing on the {side.name}: once more")
    return result


@contextmanager
def _servers(run: GateRun, candidate_src: Path) -> Iterator[dict[str, Side]]:
    """Starts the candidate's and the baseline's servers; yields them once both serve."""
    with ExitStack() as stack:
        sides: dict[str, Side] = {}
        for name, source in (("candidate", candidate_src), ("baseline", run.baseline.source)):
            say(f"[{name} server] starting from {source}")
            server = stack.enter_context(
                server_process(
                    run.args.model_repository,
                    run.engine.overrides,
                    run.folder / f"{name}-server.log",
                    cpus=run.args.server_cpus,
                    source=source,
                )
            )
            side = Side(name, source, server)
            _check_source(side)
            say(f"[{name} server] {server.address}, imports {server.module_file}")
            sides[name] = side
        yield sides


def gate_against_baseline(run: GateRun) -> int:
    """Runs the ABBA comparison and the floors; returns 0 when both pass, else 1."""
    args = run.args
    candidate_src = (args.candidate_src or Path(__file__).resolve().parent.parent).resolve()
    say(
        f"baseline gate: candidate {candidate_src} against baseline {run.baseline.commit[:12]} "
        f"({run.baseline.reason}), ABBA: {', '.join(ORDER)} for each figure"
    )
    say(f"[ceiling] {args.model} in-process, {CEILING_SECONDS_PER_BATCH} s per batch size")
    with pinned(args.server_cpus):
        ceiling = measure_ceiling(
            run.engine.settings, args.model, seconds_per_batch=CEILING_SECONDS_PER_BATCH
        )
    say(format_ceiling(ceiling))
    phases = gate_phases(run.rules)
    load = Load(args.model, args.clips, STREAM_SECONDS, args.load_cpus)
    runs: dict[str, dict[str, list[PhaseResult]]] = {"candidate": {}, "baseline": {}}
    raw: dict[str, dict[str, list[tuple[PhaseResult, Path]]]] = {"candidate": {}, "baseline": {}}
    with _servers(run, candidate_src) as by_name:
        for phase in phases:
            for number, name in enumerate(ORDER):
                repeat = ORDER[:number].count(name) + 1
                folder = run.folder / f"{name}-{repeat}"
                folder.mkdir(exist_ok=True)
                result = _measure(
                    phase, f"{name} {repeat}", by_name[name], load=load, folder=folder,
                    ceiling=ceiling,
                )  # fmt: skip
                runs[name].setdefault(phase.name, []).append(result)
                raw[name].setdefault(phase.name, []).append(
                    (result, folder / f"{phase.name}_requests.csv")
                )
        modules = {name: side.server.module_file for name, side in by_name.items()}
        artifacts = {
            name: side.server.artifacts.get(args.model, "") for name, side in by_name.items()
        }
    decided = verdicts(figures(runs, run.rules, ceiling), run.rules)
    summaries = {}
    for name in ("candidate", "baseline"):
        pooled = [_pool(raw[name][phase.name], phase) for phase in phases]
        summary = Summary(
            started_at=run.started_at,
            profile="gate",
            model=args.model,
            clips=args.clips,
            hop_ms=run.hop_ms,
            server_settings=run.engine.overrides,
            cpu_count=os.cpu_count() or 0,
            ceiling=ceiling,
            phases=tuple(pooled),
            ceiling_before_windows_per_s=ceiling.windows_per_s,
            ceiling_after_windows_per_s=ceiling.windows_per_s,
            engine_choice=run.engine.choice,
            server_artifact=artifacts[name],
            server_module=modules[name],
        )
        (run.folder / name).mkdir(exist_ok=True)
        summary.write(run.folder / name / "summary.json")
        write_report(summary, run.folder / name, run.floors, run.targets)
        summaries[name] = summary
    comparison = format_verdicts(
        decided,
        f"baseline gate: candidate ({candidate_src}) against {run.baseline.commit[:12]} "
        f"({run.baseline.reason}); margin = max({run.rules.spread_factor:g} x spread, "
        "the figure's floors in gates.toml [baseline])",
    )
    floors = format_checks(
        evaluate(summaries["candidate"], run.floors),
        "absolute floors (benchmarks/gates.toml [gate]) on the candidate, repeats pooled",
    )
    say(f"\n{comparison}\n\n{floors}")
    (run.folder / "baseline.json").write_text(
        json.dumps(
            {
                "candidate_source": str(candidate_src),
                "candidate_module": modules["candidate"],
                "baseline_commit": run.baseline.commit,
                "baseline_reason": run.baseline.reason,
                "baseline_module": modules["baseline"],
                "order": list(ORDER),
                "rules": run.rules.model_dump(),
                "verdicts": [{**asdict(verdict), "passed": verdict.passed} for verdict in decided],
            },
            indent=2,
        )
    )
    (run.folder / "report.md").write_text(
        f"# Baseline gate {run.started_at}\n\n```\n{comparison}\n\n{floors}\n```\n\n"
        "Each side's pooled figures: [candidate](candidate/report.md), "
        "[baseline](baseline/report.md); every repeat's CSVs in `<side>-<n>/`.\n"
    )
    say(f"\nreport: {run.folder / 'report.md'}")
    passed = all(verdict.passed for verdict in decided) and all(
        check.passed for check in evaluate(summaries["candidate"], run.floors)
    )
    return 0 if passed else 1
