"""`mozart analyze`: measure a model over layouts and batch limits, write the best as TOML."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mozart_server.cpus import usable_cpus

if TYPE_CHECKING:
    from mozart_optimize.analyze import Grid, Subject

EXIT_USAGE = 2
EXIT_LOAD = 1
DEFAULT_OUT = Path("analyze.toml")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _ints(text: str, flag: str, least: int) -> tuple[int, ...]:
    try:
        values = tuple(dict.fromkeys(int(item) for item in text.split(",") if item.strip()))
    except ValueError:
        raise ValueError(f"{flag} takes comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < least:
        raise ValueError(f"{flag} takes numbers of at least {least}, got {text!r}")
    return values


def _spinning(text: str) -> tuple[bool, ...]:
    choices = {"off": False, "on": True}
    items = [item.strip().lower() for item in text.split(",") if item.strip()]
    if not items or any(item not in choices for item in items):
        raise ValueError(f"--spinning takes off, on or off,on, got {text!r}")
    return tuple(dict.fromkeys(choices[item] for item in items))


def default_counts(cpus: int) -> str:
    """Powers of two up to the usable CPUs: the default instances and threads of the grid."""
    counts = [1]
    while counts[-1] * 2 <= cpus:
        counts.append(counts[-1] * 2)
    return ",".join(map(str, counts))


class _UsageError(Exception):
    """A usage problem, said in one line (exit code 2)."""


def _grid(args: argparse.Namespace, cpus: int) -> Grid:
    # Imported when used, so that `mozart --help` does not load the server and ONNX Runtime.
    from mozart_optimize.analyze import BatchLimits, Grid, Layout  # noqa: PLC0415

    counts = default_counts(cpus)
    try:
        instances = _ints(args.instances or counts, "--instances", 1)
        threads = _ints(args.intra_op_threads or counts, "--intra-op-threads", 1)
        spinning = _spinning(args.spinning)
        batch_sizes = _ints(args.max_batch_sizes, "--max-batch-sizes", 1)
        delays = _ints(args.max_queue_delays_us, "--max-queue-delays-us", 0)
    except ValueError as error:
        raise _UsageError(str(error)) from None
    if args.seconds <= 0 or args.rounds < 1 or args.concurrency < 2:
        raise _UsageError("--seconds must be above 0, --rounds at least 1, --concurrency 2+")
    return Grid(
        layouts=tuple(
            Layout(count, thread_count, spin)
            for count in instances
            for thread_count in threads
            for spin in spinning
            if not (spin and thread_count == 1)  # one thread has no pool to spin
        ),
        limits=tuple(BatchLimits(size, delay) for size in batch_sizes for delay in delays),
        seconds=args.seconds,
        concurrency=args.concurrency,
        rounds=args.rounds,
    )


def _subject(args: argparse.Namespace) -> Subject:
    from pydantic import ValidationError  # noqa: PLC0415

    from mozart_optimize.analyze import Subject  # noqa: PLC0415
    from mozart_server.errors import ModelLoadError  # noqa: PLC0415
    from mozart_server.models.manifest import read_manifest  # noqa: PLC0415
    from mozart_server.models.repository import VersionDir, version_dirs  # noqa: PLC0415
    from mozart_server.settings import ServerSettings  # noqa: PLC0415

    repository: Path = args.model_repository
    if not repository.is_dir():
        raise _UsageError(f"no model repository at {repository}")
    versions = version_dirs(repository / args.model)
    if not versions:
        known = sorted(path.name for path in repository.iterdir() if version_dirs(path))
        raise _UsageError(
            f"no model {args.model!r} in {repository} (it has: {', '.join(known) or 'none'})"
        )
    chosen = versions[-1] if args.version is None else repository / args.model / args.version
    if chosen not in versions:
        have = ", ".join(path.name for path in versions)
        raise _UsageError(f"model {args.model!r} has no version {args.version!r} (it has: {have})")
    engine = {} if args.engine is None else {"engine": args.engine}
    try:
        settings = ServerSettings(model_repository=repository, **engine)
        manifest = read_manifest(VersionDir(args.model, chosen.name, chosen))
    except (ValidationError, ModelLoadError) as error:
        raise _UsageError(str(error)) from None
    return Subject(settings, manifest, chosen)


def _analyze(args: argparse.Namespace) -> int:
    from mozart_optimize.analyze import run_grid  # noqa: PLC0415
    from mozart_optimize.analyze_report import format_table, write_toml  # noqa: PLC0415
    from mozart_server.errors import ModelLoadError  # noqa: PLC0415

    cpus = usable_cpus().count
    try:
        grid = _grid(args, cpus)
        subject = _subject(args)
    except _UsageError as error:
        print(f"mozart analyze: {error}", file=sys.stderr)
        return EXIT_USAGE
    started = datetime.now(UTC)
    manifest = subject.manifest
    _say(f"mozart analyze: {manifest.name} v{manifest.version} on {cpus} usable CPUs, "
         f"{len(grid.layouts)} layouts then {len(grid.limits)} batch limits, "
         f"{grid.rounds} rounds of about {4 * grid.seconds:.0f} s each per point")  # fmt: skip
    try:
        analysis = run_grid(subject, grid, cpus, _say)
    except ModelLoadError as error:
        print(f"mozart analyze: {error}", file=sys.stderr)
        return EXIT_LOAD
    print(format_table(analysis))
    out: Path = args.out
    write_toml(analysis, out, started)
    print(f"wrote {out}; serve with: mozart serve --config-file {out} "
          f"--model-repository {args.model_repository}")  # fmt: skip
    return 0


def register(subparsers: Any) -> None:
    """Adds `analyze` to the `mozart` command (through optimize's mozart.commands entry)."""
    parser = subparsers.add_parser(
        "analyze",
        help="measure a model over engine layouts and batch limits; write the best as TOML",
        description="Measures one model version on this machine, in the spirit of Triton's "
        "Model Analyzer: each layout (ONNX Runtime instances x intra-op threads) and then each "
        "batch limit, through the server's own engine and dynamic batcher, against the "
        "ceiling measured in the same run. Progress goes to stderr, the table to stdout, and "
        "the best settings to a TOML file for MOZART_CONFIG_FILE. See docs/analyze.md.",
    )
    parser.add_argument("--model-repository", type=Path, default=Path("models"),
                        help="the model repository (default: %(default)s)")  # fmt: skip
    parser.add_argument("--model", default="composer-cnn",
                        help="model name (default: %(default)s)")  # fmt: skip
    parser.add_argument("--version", help="model version (default: the newest)")
    parser.add_argument("--engine", choices=("auto", "fp32", "int8", "tensorrt"),
                        help="engine choice, as `mozart serve --engine` (default: MOZART_ENGINE, "
                        "else auto)")  # fmt: skip
    parser.add_argument("--instances", help="instances to try, comma-separated "
                        "(default: powers of two up to the usable CPUs)")  # fmt: skip
    parser.add_argument("--intra-op-threads", help="intra-op threads to try, comma-separated "
                        "(default: powers of two up to the usable CPUs)")  # fmt: skip
    parser.add_argument("--spinning", default="off",
                        help="allow_spinning values to try: off, on or off,on "
                        "(default: %(default)s)")  # fmt: skip
    parser.add_argument("--max-batch-sizes", default="16,8,32",
                        help="max_batch_size values to try on the best layout; the first is "
                        "used for the layouts (default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--max-queue-delays-us",
        default="0,1000",
        help="max_queue_delay_us values to try (default: %(default)s)",
    )
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="seconds of saturated load per point and round; each point takes "
                        "about 4x this (default: %(default)s)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2,
                        help="times each point is measured, in alternating order; medians are "
                        "kept (default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="single-window callers at saturation (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="the TOML file to write (default: %(default)s)")  # fmt: skip
    parser.set_defaults(handler=_analyze)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mozart_optimize.analyze_cli`: the same as `mozart analyze`."""
    parser = argparse.ArgumentParser(prog="mozart")
    register(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
