"""`make bench`: start the server, measure the ceiling, run Locust at several loads, report.

    python -m benchmarks.run --profile full            # make bench
    python -m benchmarks.run --profile quick --gate    # make bench-gate (about 100 s)
    python -m benchmarks.run --engines fp32,int8       # both engines side by side

Writes benchmarks/results/<timestamp>/: the raw CSVs of every phase, summary.json,
report.md and PNG plots; with several engines, those in one folder per engine and, beside
them, report.md and comparison.json with the engines side by side. Server settings come
from MOZART_* variables (the server and the ceiling both read them) and from
`--set name=value`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.ceiling import Ceiling, combine, find_version, format_ceiling, measure_ceiling
from benchmarks.clips import DEFAULT_CLIPS, load_clips
from benchmarks.compare import Comparison
from benchmarks.cpus import parse_cpu_list, pinned
from benchmarks.engines import EngineUnderTest, engines_under_test, parse_engines
from benchmarks.gate import GATES_FILE, evaluate, load_thresholds
from benchmarks.report import comparison_tables, write_comparison_report, write_report
from benchmarks.results import PhaseResult, Summary, read_raw, server_delta
from benchmarks.server_process import RunningServer, scrape, server_process
from mozart_server.errors import ModelLoadError
from mozart_server.models.manifest import read_manifest

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
RESULTS = Path(__file__).with_name("results")


@dataclass(frozen=True)
class Phase:
    """One Locust run: a user class at a fixed number of users for a fixed time."""

    name: str
    user_class: str
    users: int
    seconds: int
    unary_mode: str = "clips"
    stream_rate: str = "clip"


@dataclass(frozen=True)
class Profile:
    """How long and at which loads a run measures."""

    ceiling_seconds_per_batch: float
    stream_seconds: float
    phases: tuple[Phase, ...]


def profile(name: str, gate_streams: int, target_streams: Sequence[int]) -> Profile:
    """The quick profile (the gate, under two minutes), the full one (`make bench`) or smoke.

    smoke (tests only) measures just enough to exercise every part in about 30 seconds.
    """
    if name == "smoke":
        return Profile(
            ceiling_seconds_per_batch=0.2,
            stream_seconds=4.0,
            phases=(
                Phase("overhead", "UnaryUser", 1, 6, "single-window"),
                Phase("users-4", "UnaryUser", 4, 5),
                Phase("streams-2", "StreamUser", 2, 6),
                Phase("v2-2", "V2User", 2, 3),
            ),
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
    )


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_phase(
    phase: Phase,
    *,
    address: str,
    model: str,
    clips: str,
    stream_seconds: float,
    folder: Path,
    cpus: frozenset[int] | None = None,
) -> None:
    """Runs Locust headless for one phase, on `cpus` if given; CSVs and log land in `folder`."""
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), phase.user_class,
        "--headless", "--only-summary", "--loglevel", "WARNING",
        "-u", str(phase.users), "-r", str(phase.users), "-t", f"{phase.seconds}s",
        "--host", address, "--csv", str(folder / phase.name),
        "--model", model, "--clips", clips, "--unary-mode", phase.unary_mode,
        "--stream-seconds", str(stream_seconds), "--stream-rate", phase.stream_rate,
        "--raw-csv", str(folder / f"{phase.name}_requests.csv"),
    ]  # fmt: skip
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in paths if path))
    with (folder / f"{phase.name}.log").open("w") as log, pinned(cpus):
        # Locust exits 1 when a request failed; the summary counts failures itself.
        subprocess.run(  # noqa: S603 - our own interpreter and arguments, no shell
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=phase.seconds + 120,
            check=False,
        )
    if not (folder / f"{phase.name}_requests.csv").exists():
        raise RuntimeError(
            f"Locust wrote no results for {phase.name}; see {folder}/{phase.name}.log"
        )


def _cpu_list(cpus: frozenset[int] | None) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus)) if cpus is not None else ""


def _say(message: str) -> None:
    print(message, flush=True)


def _progress(phase: PhaseResult, ceiling_windows_per_s: float) -> str:
    return (
        f"    {phase.requests} requests, {phase.failures} failed, "
        f"{phase.windows_per_s:.1f} windows/s ({phase.windows_per_s / ceiling_windows_per_s:.2f} "
        f"of the first ceiling), median {phase.latency.median_ms:.1f} ms, "
        f"p99 {phase.latency.p99_ms:.1f} ms, "
        f"mean batch {phase.server.mean_batch_size:.1f}"
    )


def _measure_phase(
    phase: Phase,
    number: int,
    *,
    plan: Profile,
    server: RunningServer,
    args: argparse.Namespace,
    folder: Path,
    ceiling_windows_per_s: float,
    label: str = "",
) -> PhaseResult:
    """Runs one phase between two /metrics scrapes and reads its results."""
    _say(
        f"[{label}{number}/{len(plan.phases)}] {phase.name}: "
        f"{phase.users} x {phase.user_class} for {phase.seconds} s"
    )
    before, cpu_before = scrape(server.metrics_url), _cpu_seconds(server.pid)
    (folder / f"{phase.name}_metrics_before.txt").write_text(str(before))
    run_phase(
        phase,
        address=server.address,
        model=args.model,
        clips=args.clips,
        stream_seconds=plan.stream_seconds,
        folder=folder,
        cpus=args.load_cpus,
    )
    after, cpu_after = scrape(server.metrics_url), _cpu_seconds(server.pid)
    (folder / f"{phase.name}_metrics_after.txt").write_text(str(after))
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    result = read_raw(
        folder / f"{phase.name}_requests.csv",
        name=phase.name,
        user_class=phase.user_class,
        users=phase.users,
        seconds=phase.seconds,
        server=server_delta(before, after, cpu),
    )
    _say(_progress(result, ceiling_windows_per_s))
    time.sleep(1)  # let the last calls of this phase drain before the next scrape
    return result


def _serve(
    engine: EngineUnderTest,
    label: str,
    *,
    plan: Profile,
    args: argparse.Namespace,
    folder: Path,
    ceiling: Ceiling,
) -> tuple[list[PhaseResult], str]:
    """Starts a server with this engine's settings and runs every phase against it.

    Returns the phases' results and the artifact the server logged it serves ("" if unsaid).

    Raises:
        RuntimeError: the server serves another artifact than the ceiling measured.
    """
    _say(f"[{label}server] starting")
    with server_process(
        args.model_repository, engine.overrides, folder / "server.log", cpus=args.server_cpus
    ) as server:
        served = server.artifacts.get(args.model, "")
        if served and served != ceiling.artifact:
            raise RuntimeError(
                f"the server serves {served} but the ceiling measured {ceiling.artifact}; "
                f"see {folder / 'server.log'}"
            )
        _say(
            f"[{label}server] serving {served or 'an artifact its log did not name'} on "
            f"{server.address} (metrics {server.metrics_url})"
        )
        phases = [
            _measure_phase(
                phase,
                number,
                plan=plan,
                server=server,
                args=args,
                folder=folder,
                ceiling_windows_per_s=ceiling.windows_per_s,
                label=label,
            )
            for number, phase in enumerate(plan.phases, 1)
        ]
    return phases, served


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--profile", choices=("quick", "full", "smoke"), default="full")
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="composer-cnn")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark; with --gate, exits 1 when a gate threshold fails (for any engine)."""
    args = _parser().parse_args(argv)

    overrides = dict(item.split("=", 1) for item in args.set)
    gate, targets = load_thresholds(args.gates, "gate"), load_thresholds(args.gates, "targets")
    plan = profile(
        args.profile, gate.streams, (targets.streams, 2 * targets.streams, 4 * targets.streams)
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
    _say(f"benchmark {args.profile}: {len(clips)} clips from {args.clips}; results in {folder}")
    for engine in engines:
        _say(
            f"[engine] {engine.choice}: {engine.artifact.file} "
            f"({engine.artifact.precision}, {engine.artifact.kind})"
        )

    def ceiling_now(engine: EngineUnderTest, label: str) -> Ceiling:
        _say(
            f"[{label}ceiling] {args.model} in-process, batch 1..64, "
            f"{plan.ceiling_seconds_per_batch} s each"
        )
        with pinned(args.server_cpus):
            ceiling = measure_ceiling(
                engine.settings, args.model, seconds_per_batch=plan.ceiling_seconds_per_batch
            )
        _say(format_ceiling(ceiling))
        return ceiling

    # Every ceiling before the first server and again, in reverse order, after the last:
    # the machine's drift then weighs on each engine's mean alike.
    firsts = [ceiling_now(engine, label) for engine, label in zip(engines, labels, strict=True)]
    served = [
        _serve(engine, label, plan=plan, args=args, folder=engine_folder, ceiling=first)
        for engine, label, engine_folder, first in zip(
            engines, labels, folders, firsts, strict=True
        )
    ]
    _say("[ceiling] again, now that the load is over")
    lasts = [
        ceiling_now(engine, label)
        for engine, label in reversed(list(zip(engines, labels, strict=True)))
    ][::-1]
    summaries = []
    for engine, label, engine_folder, first, last, (phases, server_artifact) in zip(
        engines, labels, folders, firsts, lasts, served, strict=True
    ):
        ceiling = combine(first, last)
        _say(
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
            phases=tuple(phases),
            ceiling_before_windows_per_s=first.windows_per_s,
            ceiling_after_windows_per_s=last.windows_per_s,
            engine_choice=engine.choice,
            server_artifact=server_artifact,
        )
        summary.write(engine_folder / "summary.json")
        gate_table, targets_table = write_report(summary, engine_folder, gate, targets)
        if not side_by_side:
            _say(f"\n{gate_table}\n\n{targets_table}")
        summaries.append(summary)
    if side_by_side:
        comparison = Comparison(tuple(summaries))
        comparison.write(folder / "comparison.json")
        gate_tables = write_comparison_report(comparison, folder, gate)
        _say("\n" + "\n".join(comparison_tables(comparison)) + f"\n\n{gate_tables}")
    _say(f"\nreport: {folder / 'report.md'}")
    # Every engine that serves must pass the gate against its own ceiling.
    passed = all(check.passed for summary in summaries for check in evaluate(summary, gate))
    return 0 if passed or not args.gate else 1


if __name__ == "__main__":
    raise SystemExit(main())
