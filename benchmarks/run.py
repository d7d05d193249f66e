"""`make bench`: start the server, measure the ceiling, run Locust at several loads, report.

    python -m benchmarks.run --profile full            # make bench (with the stream knee)
    python -m benchmarks.run --profile knee --model heavy   # the heavy model's knee alone
    python -m benchmarks.run --profile quick --gate    # make bench-gate: ABBA vs the baseline
    python -m benchmarks.run --engines fp32,int8       # both engines side by side

Writes benchmarks/results/<timestamp>/: the raw CSVs of every phase, summary.json,
report.md and PNG plots; with several engines, those in one folder per engine and, beside
them, report.md and comparison.json with the engines side by side; with --gate and a
baseline, each side's pooled figures and the comparison (abba.py). Server settings come
from MOZART_* variables (the server and the ceiling both read them) and from
`--set name=value`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.abba import GateRun, gate_against_baseline
from benchmarks.baseline import choose_baseline, load_rules
from benchmarks.ceiling import Ceiling, combine, find_version, format_ceiling, measure_ceiling
from benchmarks.clips import DEFAULT_CLIPS, load_clips
from benchmarks.compare import Comparison
from benchmarks.cpus import parse_cpu_list, pinned
from benchmarks.engines import EngineUnderTest, engines_under_test, parse_engines
from benchmarks.gate import GATES_FILE, Thresholds, evaluate, load_thresholds
from benchmarks.heavy_model import NAME as HEAVY_NAME
from benchmarks.heavy_model import ensure_heavy_model
from benchmarks.knee import (
    KNEE_HOP_MS,
    STEPS,
    STREAMS_PER_LOAD_PROCESS,
    Knee,
    KneeStep,
    load_processes,
    ramp,
)
from benchmarks.phases import Load, Phase, measure_phase, say
from benchmarks.report import comparison_tables, write_comparison_report, write_report
from benchmarks.results import PhaseResult, Summary
from benchmarks.server_process import server_process
from mozart_server.errors import ModelLoadError
from mozart_server.models.manifest import read_manifest

RESULTS = Path(__file__).with_name("results")
HEAVY = "heavy"  # --model heavy: the generated heavy benchmark model


@dataclass(frozen=True)
class Profile:
    """How long and at which loads a run measures."""

    ceiling_seconds_per_batch: float
    stream_seconds: float
    phases: tuple[Phase, ...]
    knee_steps: tuple[int, ...] = ()  # stream counts the knee ramp may run; () runs none
    knee_seconds: int = 20  # how long each step of the ramp runs


def profile(name: str, gate_streams: int, target_streams: Sequence[int]) -> Profile:
    """The quick profile (the gate), the full one (`make bench`), knee (the ramp only) or smoke.

    smoke (tests only) measures just enough to exercise every part, a few seconds each.
    """
    if name == "smoke":
        return Profile(
            ceiling_seconds_per_batch=0.1,
            stream_seconds=4.0,
            phases=(
                Phase("overhead", "UnaryUser", 1, 4, "single-window"),
                Phase("users-4", "UnaryUser", 4, 3),
                Phase("streams-2", "StreamUser", 2, 4),
                Phase("v2-2", "V2User", 2, 2),
            ),
            knee_steps=(2,),
            knee_seconds=3,
        )
    if name == "knee":
        return Profile(
            ceiling_seconds_per_batch=1.0, stream_seconds=40.0, phases=(), knee_steps=STEPS
        )
    if name == "quick":
        return Profile(
            ceiling_seconds_per_batch=1.0,
            stream_seconds=10.0,
            phases=(
                Phase("overhead", "UnaryUser", 1, 12, "single-window"),
                Phase("users-16", "UnaryUser", 16, 15),
                Phase(f"streams-{gate_streams}", "StreamUser", gate_streams, 22),
                Phase("v2-4", "V2User", 4, 8),
            ),
        )
    sweep = [Phase(f"users-{n}", "UnaryUser", n, 20) for n in (1, 2, 4, 8, 16, 32)]
    v2 = [Phase(f"v2-{n}", "V2User", n, 15) for n in (1, 8, 32)]
    counts = sorted({gate_streams, *target_streams})
    streams = [Phase(f"streams-{n}", "StreamUser", n, 32) for n in counts]
    # The same load sent at the model's own rate: the server resamples nothing.
    at_model_rate = Phase(
        f"model-rate-streams-{target_streams[0]}", "StreamUser", target_streams[0], 32,
        stream_rate="model",
    )  # fmt: skip
    return Profile(
        ceiling_seconds_per_batch=3.0,
        stream_seconds=15.0,
        phases=(
            Phase("overhead", "UnaryUser", 1, 30, "single-window"),
            *sweep,
            *v2,
            *streams,
            at_model_rate,
        ),
        knee_steps=STEPS,
    )


@dataclass(frozen=True)
class Served:
    """What one server's session measured, and what that server said it ran."""

    phases: list[PhaseResult]
    artifact: str  # the artifact the server logged it serves ("" if unsaid)
    module: str  # the mozart_server package file the server process imported
    knee_steps: list[KneeStep]
    knee_hop_ms: int


def knee_hop_ms(ceiling: Ceiling) -> int:
    """The ramp's hop: 1 s, or the whole window for a model whose window is shorter."""
    return min(KNEE_HOP_MS, ceiling.window_samples * 1000 // ceiling.sample_rate_hz)


def _serve(
    engine: EngineUnderTest,
    label: str,
    *,
    plan: Profile,
    args: argparse.Namespace,
    folder: Path,
    ceiling: Ceiling,
    bound_ms: float,
) -> Served:
    """Starts a server with this engine's settings, runs every phase, then the knee ramp.

    Raises:
        RuntimeError: the server serves another artifact than the ceiling measured.
    """
    say(f"[{label}server] starting")
    with server_process(
        args.model_repository,
        engine.overrides,
        folder / "server.log",
        cpus=args.server_cpus,
        source=args.candidate_src,
    ) as server:
        served = server.artifacts.get(args.model, "")
        if served and served != ceiling.artifact:
            raise RuntimeError(
                f"the server serves {served} but the ceiling measured {ceiling.artifact}; "
                f"see {folder / 'server.log'}"
            )
        say(
            f"[{label}server] serving {served or 'an artifact its log did not name'} on "
            f"{server.address} (metrics {server.metrics_url}), code {server.module_file}"
        )
        load = Load(args.model, args.clips, plan.stream_seconds, args.load_cpus)
        phases = [
            measure_phase(
                phase,
                title=f"{label}{number}/{len(plan.phases)}",
                server=server,
                load=load,
                folder=folder,
                ceiling_windows_per_s=ceiling.windows_per_s,
            )
            for number, phase in enumerate(plan.phases, 1)
        ]
        hop_ms = knee_hop_ms(ceiling)

        def knee_step(streams: int) -> KneeStep:
            processes = load_processes(streams, args.streams_per_load_process)
            phase = Phase(f"knee-{streams}", "StreamUser", streams, plan.knee_seconds,
                          hop_ms=hop_ms)  # fmt: skip
            measured = measure_phase(
                phase,
                title=f"{label}knee",
                server=server,
                load=load,
                folder=folder,
                ceiling_windows_per_s=ceiling.windows_per_s,
                processes=processes,
            )
            return KneeStep(
                streams=streams,
                seconds=phase.seconds,
                windows=measured.latency.count,
                failures=measured.failures,
                p50_ms=measured.latency.median_ms,
                p99_ms=measured.latency.p99_ms,
                windows_per_s=measured.windows_per_s,
                load_processes=processes,
                load_cpu_s=measured.load_cpu_s,
                server_cpu_s=measured.server.cpu_s,
                load_average=os.getloadavg()[0],
                server_within_bound=measured.server.share_of_stream_windows_within(bound_ms),
            )

        steps = []
        if plan.knee_steps:
            say(f"[{label}knee] streams at hop {hop_ms} ms until p99 > {bound_ms:g} ms")
            steps = ramp(knee_step, bound_ms, plan.knee_steps, say=say)
    return Served(phases, served, server.module_file, steps, hop_ms)


def _cpu_list(cpus: frozenset[int] | None) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus)) if cpus is not None else ""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--profile", choices=("quick", "full", "knee", "smoke"), default="full")
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument(
        "--model",
        default="composer-cnn",
        help=f"the model to load; `{HEAVY}` builds (or reuses) the heavy benchmark model "
        "(about 0.35 GMAC per window) and serves it from its own repository",
    )
    parser.add_argument(
        "--streams-per-load-process",
        type=int,
        default=STREAMS_PER_LOAD_PROCESS,
        help="the knee ramp splits its streams over one Locust process per this many",
    )
    parser.add_argument("--clips", default=DEFAULT_CLIPS, help="glob of real audio clips")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server setting for the server and the ceiling (repeatable)",
    )
    parser.add_argument(
        "--engines",
        type=parse_engines,
        metavar="LIST",
        help="engines to measure side by side in one run, the baseline first (e.g. fp32,int8); "
        "default: the configured engine alone",
    )
    parser.add_argument("--gates", type=Path, default=GATES_FILE)
    parser.add_argument("--out", type=Path, default=RESULTS, help="parent folder of the run")
    parser.add_argument("--gate", action="store_true", help="exit 1 when the gate fails")
    parser.add_argument(
        "--phases",
        metavar="LIST",
        help="run only these of the profile's phases (names separated by commas, e.g. "
        "overhead), and no knee ramp unless `knee` is among them",
    )
    parser.add_argument(
        "--candidate-src",
        type=Path,
        metavar="DIR",
        help="the source tree whose server/ and proto/ the server runs (with --gate: the "
        "candidate; default: this working tree), e.g. a `git archive` of another commit",
    )
    parser.add_argument(
        "--baseline-commit",
        metavar="REV",
        help="with --gate: compare against this commit instead of the newest v* tag or "
        "gates.toml's pinned commit",
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="with --gate: the absolute floors alone, no baseline run",
    )
    parser.add_argument(
        "--server-cpus",
        type=parse_cpu_list,
        metavar="LIST",
        help="run the server and the ceiling on these CPUs (e.g. 0-1); default: unpinned",
    )
    parser.add_argument(
        "--load-cpus",
        type=parse_cpu_list,
        metavar="LIST",
        help="run Locust on these CPUs (e.g. 2-15), apart from the server's",
    )
    return parser


def _gate_against_baseline(
    args: argparse.Namespace,
    engine: EngineUnderTest,
    thresholds: tuple[Thresholds, Thresholds],
    hop_ms: int,
    folder: Path,
) -> int | None:
    """The ABBA gate against the baseline; None when there is no baseline to run.

    Without one (no git, a shallow clone), it says so and the run goes on with the
    absolute floors alone: a fresh clone must not fail for that.
    """
    rules = load_rules(args.gates)
    baseline = choose_baseline(
        args.baseline_commit or rules.commit, tags=args.baseline_commit is None
    )
    if isinstance(baseline, str):
        say(f"baseline gate: no baseline, {baseline}; the absolute floors alone gate this run")
        return None
    gate, targets = thresholds
    return gate_against_baseline(
        GateRun(args, engine, baseline, rules, gate, targets, hop_ms, folder, folder.name)
    )


def _only(plan: Profile, phases: str | None) -> Profile:
    """The profile with only the named phases (and the knee ramp only if `knee` is named)."""
    if phases is None:
        return plan
    names = {name.strip() for name in phases.split(",")}
    kept = tuple(phase for phase in plan.phases if phase.name in names)
    return replace(plan, phases=kept, knee_steps=plan.knee_steps if "knee" in names else ())


def _choose_model(args: argparse.Namespace) -> argparse.Namespace:
    """`--model heavy`: the heavy benchmark model, from its own (cached) repository."""
    if args.model == HEAVY:
        say("[model] the heavy benchmark model (built on first use, then cached)")
        args.model_repository = ensure_heavy_model()
        args.model = HEAVY_NAME
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark; with --gate, exits 1 when a gate threshold fails (for any engine)."""
    args = _choose_model(_parser().parse_args(argv))
    overrides = dict(item.split("=", 1) for item in args.set)
    gate, targets = load_thresholds(args.gates, "gate"), load_thresholds(args.gates, "targets")
    plan = _only(
        profile(
            args.profile, gate.streams, (targets.streams, 2 * targets.streams, 4 * targets.streams)
        ),
        args.phases,
    )
    try:
        # Before anything runs: an engine the model cannot serve here ends the run now.
        engines = engines_under_test(args.model_repository, args.model, overrides, args.engines)
        clips = load_clips(args.clips)
        hop_ms = read_manifest(find_version(engines[0].settings, args.model)).default_hop_ms
    except (FileNotFoundError, LookupError, ModelLoadError, ValueError) as missing:
        print(f"benchmark: {missing}", file=sys.stderr)
        return 2
    started_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = args.out / started_at
    side_by_side = len(engines) > 1
    # One engine writes its results in the run's folder; several, one folder each.
    folders = [folder / engine.choice if side_by_side else folder for engine in engines]
    labels = [f"{engine.choice} " if side_by_side else "" for engine in engines]
    for engine_folder in folders:
        engine_folder.mkdir(parents=True)
    say(f"benchmark {args.profile}: {len(clips)} clips from {args.clips}; results in {folder}")
    for engine in engines:
        say(f"[engine] {engine.choice}: {engine.artifact.file} "
            f"({engine.artifact.precision}, {engine.artifact.kind})")  # fmt: skip
    if args.gate and args.profile == "quick" and not side_by_side and not args.no_baseline:
        code = _gate_against_baseline(args, engines[0], (gate, targets), hop_ms, folder)
        if code is not None:
            return code

    def ceiling_now(engine: EngineUnderTest, label: str) -> Ceiling:
        say(
            f"[{label}ceiling] {args.model} in-process, batch 1..64, "
            f"{plan.ceiling_seconds_per_batch} s each"
        )
        with pinned(args.server_cpus):
            ceiling = measure_ceiling(
                engine.settings, args.model, seconds_per_batch=plan.ceiling_seconds_per_batch
            )
        say(format_ceiling(ceiling))
        return ceiling

    # Every ceiling before the first server and again, in reverse order, after the last:
    # the machine's drift then weighs on each engine's mean alike.
    firsts = [ceiling_now(engine, label) for engine, label in zip(engines, labels, strict=True)]
    bound_ms = targets.max_stream_p99_ms
    served = [
        _serve(
            engine,
            label,
            plan=plan,
            args=args,
            folder=engine_folder,
            ceiling=first,
            bound_ms=bound_ms,
        )
        for engine, label, engine_folder, first in zip(
            engines, labels, folders, firsts, strict=True
        )
    ]
    say("[ceiling] again, now that the load is over")
    lasts = [
        ceiling_now(engine, label)
        for engine, label in reversed(list(zip(engines, labels, strict=True)))
    ][::-1]
    summaries = []
    for engine, label, engine_folder, first, last, session in zip(
        engines, labels, folders, firsts, lasts, served, strict=True
    ):
        ceiling = combine(first, last)
        say(
            f"{label}ceiling before {first.windows_per_s:.1f}, after {last.windows_per_s:.1f}, "
            f"mean {ceiling.windows_per_s:.1f} windows/s; batch-1 median "
            f"{ceiling.batch1_median_ms:.2f} ms"
        )
        summary = Summary(
            started_at=started_at,
            profile=args.profile,
            model=args.model,
            clips=args.clips,
            hop_ms=hop_ms,
            server_settings=engine.overrides,
            cpu_count=os.cpu_count() or 0,
            server_cpus=_cpu_list(args.server_cpus),
            load_cpus=_cpu_list(args.load_cpus),
            ceiling=ceiling,
            phases=tuple(session.phases),
            ceiling_before_windows_per_s=first.windows_per_s,
            ceiling_after_windows_per_s=last.windows_per_s,
            engine_choice=engine.choice,
            server_artifact=session.artifact,
            knee=(
                Knee(
                    model=args.model,
                    bound_ms=bound_ms,
                    hop_ms=session.knee_hop_ms,
                    steps=tuple(session.knee_steps),
                    ceiling_streams=ceiling.windows_per_s * session.knee_hop_ms / 1000,
                )
                if session.knee_steps
                else None
            ),
            server_module=session.module,
        )
        summary.write(engine_folder / "summary.json")
        gate_table, targets_table = write_report(summary, engine_folder, gate, targets)
        if not side_by_side:
            say(f"\n{gate_table}\n\n{targets_table}")
        if summary.knee is not None:
            say(f"\n{label}{summary.knee.describe()}")
        summaries.append(summary)
    if side_by_side:
        comparison = Comparison(tuple(summaries))
        comparison.write(folder / "comparison.json")
        gate_tables = write_comparison_report(comparison, folder, gate)
        say("\n" + "\n".join(comparison_tables(comparison)) + f"\n\n{gate_tables}")
    say(f"\nreport: {folder / 'report.md'}")
    # Every engine that serves must pass the gate against its own ceiling.
    passed = all(check.passed for summary in summaries for check in evaluate(summary, gate))
    return 0 if passed or not args.gate else 1


if __name__ == "__main__":
    raise SystemExit(main())
