"""The `mozart data` commands: build-corpus, fetch-gtzan, manifest, validate, demo-clips."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mozart_trainer.cli import setup_logging
from mozart_trainer.data.corpus_config import SMOKE_CONFIG, CorpusConfig
from mozart_trainer.data.gtzan import GtzanDownloadError, KaggleCredentialsError, fetch_gtzan
from mozart_trainer.data.manifest import write_manifest
from mozart_trainer.data.validate import Thresholds, validate_dataset

if TYPE_CHECKING:
    from mozart_trainer.data.corpus import BuildResult

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Adds the ``data`` command group to the ``mozart`` command."""
    data = subparsers.add_parser("data", help="build, fetch, describe and validate datasets")
    commands = data.add_subparsers(title="data commands", metavar="COMMAND")
    data.set_defaults(handler=lambda _args: _help(data))

    build = commands.add_parser("build-corpus", help="render the embedded music21 corpus")
    build.add_argument("--smoke", action="store_true", help="a tiny corpus for tests (~10 s)")
    build.add_argument("--out", type=Path, help="dataset root (default data/corpus/<digest>)")
    build.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    build.add_argument("--classes", help="comma-separated composers (default: the six)")
    build.add_argument("--works-per-class", type=int)
    build.add_argument("--segments-per-class", type=int)
    build.add_argument("--segment-s", type=float, help="seconds per excerpt")
    build.add_argument("--seed", type=int)
    build.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    build.set_defaults(handler=_build_corpus)

    gtzan = commands.add_parser("fetch-gtzan", help="download GTZAN from Kaggle")
    gtzan.add_argument("--out", type=Path, default=Path("data/gtzan"), help="dataset root")
    gtzan.add_argument("--split", choices=("artist-filtered", "random"), default="artist-filtered")
    gtzan.add_argument("--seed", type=int, default=0, help="seed of the random split")
    gtzan.set_defaults(handler=_fetch_gtzan)

    manifest = commands.add_parser(
        "manifest", help="write manifest.json for a labelled folder or a labels CSV"
    )
    manifest.add_argument("root", type=Path)
    manifest.add_argument("--csv", type=Path, help="path,labels[,split][,group] CSV")
    manifest.add_argument("--seed", type=int, default=0, help="split seed")
    manifest.set_defaults(handler=_manifest)

    validate = commands.add_parser("validate", help="check every file of a dataset")
    validate.add_argument("root", type=Path)
    validate.add_argument(
        "--report", type=Path, help="JSON report path (default <root>.validation.json)"
    )
    validate.add_argument("--window-s", type=float, default=3.0)
    validate.add_argument(
        "--max-error-fraction",
        type=float,
        default=0.01,
        help="fail when more than this share of files has errors (default 0.01)",
    )
    validate.set_defaults(handler=_validate)

    demo = commands.add_parser("demo-clips", help="cut demo clips from a corpus's test split")
    demo.add_argument("corpus", type=Path, help="a built corpus root")
    demo.add_argument("--out", type=Path, default=Path("demo/clips"))
    demo.set_defaults(handler=_demo_clips)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _corpus_config(args: argparse.Namespace) -> CorpusConfig:
    base = SMOKE_CONFIG if args.smoke else CorpusConfig()
    overrides: dict[str, object] = {
        "works_per_class": args.works_per_class,
        "segments_per_class": args.segments_per_class,
        "segment_s": args.segment_s,
        "seed": args.seed,
    }
    if args.classes:
        overrides["classes"] = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    changes = {key: value for key, value in overrides.items() if value is not None}
    return CorpusConfig.model_validate({**base.model_dump(), **changes})


def _print_build(result: BuildResult) -> None:
    manifest = result.manifest
    state = "cached" if result.cached else "built"
    print(f"{state}: {result.root}")
    print(f"dataset digest: {manifest.dataset_digest}")
    print(f"config digest:  {result.config_digest}")
    print(f"files: {len(manifest.entries)}, {manifest.total_duration_s / 60:.1f} min of audio")
    for split in manifest.splits:
        counts = manifest.class_counts(split)
        print(f"  {split}: " + ", ".join(f"{label} {n}" for label, n in counts.items()))


def _build_corpus(args: argparse.Namespace) -> int:
    # The renderer loads music21's corpus and FluidSynth: only this command needs them.
    from mozart_trainer.data.corpus import build_corpus  # noqa: PLC0415

    setup_logging()
    try:
        config = _corpus_config(args)
        result = build_corpus(config, args.out, workers=args.workers, progress=not args.no_progress)
    except (ValueError, FileExistsError) as error:
        print(f"mozart data build-corpus: {error}", file=sys.stderr)
        return 1
    _print_build(result)
    return 0


def _fetch_gtzan(args: argparse.Namespace) -> int:
    setup_logging()
    try:
        manifest = fetch_gtzan(args.out, split_mode=args.split, seed=args.seed)
    except KaggleCredentialsError as error:
        print(str(error), file=sys.stderr)
        return 2
    except (GtzanDownloadError, FileExistsError) as error:
        print(f"mozart data fetch-gtzan: {error}", file=sys.stderr)
        return 1
    print(f"fetched: {args.out}")
    print(f"dataset digest: {manifest.dataset_digest}")
    for split in manifest.splits:
        print(f"  {split}: {len(manifest.split(split))} clips")
    for item in manifest.quarantined:
        if item.path.startswith("quarantine/"):
            print(f"  quarantined {item.path}: {item.reason}")
    excluded = sum(1 for item in manifest.quarantined if item.path.startswith("excluded/"))
    print(f"  excluded by the split: {excluded}")
    return 0


def _manifest(args: argparse.Namespace) -> int:
    from mozart_trainer.data.folder import folder_manifest  # noqa: PLC0415

    setup_logging()
    try:
        manifest = folder_manifest(args.root, csv_path=args.csv, seed=args.seed)
    except (ValueError, FileNotFoundError) as error:
        print(f"mozart data manifest: {error}", file=sys.stderr)
        return 1
    path = write_manifest(args.root, manifest)
    print(f"wrote {path}: {len(manifest.entries)} files, {len(manifest.labels)} labels")
    print(f"dataset digest: {manifest.dataset_digest}")
    for item in manifest.quarantined:
        print(f"  quarantined {item.path}: {item.reason}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    setup_logging()
    if not args.root.is_dir():
        print(f"mozart data validate: {args.root} is not a folder", file=sys.stderr)
        return 2
    limits = Thresholds(window_s=args.window_s, max_error_fraction=args.max_error_fraction)
    report = validate_dataset(args.root, limits)
    report_path = args.report or args.root.parent / f"{args.root.name}.validation.json"
    report_path.write_text(json.dumps(report.model_dump(mode="json"), indent=1) + "\n")
    print(report.summary())
    print(f"report: {report_path}")
    return 0 if report.passed else 1


def _demo_clips(args: argparse.Namespace) -> int:
    from mozart_trainer.data.demo_clips import write_demo_clips  # noqa: PLC0415

    setup_logging()
    clips = write_demo_clips(args.corpus, args.out)
    for clip in clips:
        print(f"{clip.file}: {clip.label}, {clip.work}, {', '.join(clip.instruments)}")
    return 0
