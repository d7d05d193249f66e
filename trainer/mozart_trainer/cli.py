"""The trainer's `mozart` subcommands: train (and train tune), evaluate, export."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from mozart_proto.logs import configure_logging
from mozart_trainer.paths import project_root

DEFAULT_CONFIG = Path("trainer/configs/default.yaml")


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"YAML config (default: {DEFAULT_CONFIG} in the project)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.epochs=3 (repeatable)",
    )


def _config_path(args: argparse.Namespace) -> Path:
    path: Path | None = args.config
    return path if path is not None else project_root() / DEFAULT_CONFIG


def setup_logging() -> None:
    """Mozart's log layout on stderr (mozart_proto.logs): the trainer's records from INFO.

    Other libraries' records (MLflow, Optuna, Alembic) from WARNING. MOZART_LOG_FORMAT or
    APP_ENV=dev choose the format; a format that is neither json nor text exits with 2.
    """
    try:
        configure_logging("WARNING")
    except ValueError as error:
        print(f"mozart: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.getLogger("mozart_trainer").setLevel(logging.INFO)


def _train(args: argparse.Namespace) -> int:
    from mozart_trainer.config import load_config  # noqa: PLC0415 - torch loads lazily
    from mozart_trainer.pipeline import run_training  # noqa: PLC0415
    from mozart_trainer.publish import PublishError  # noqa: PLC0415

    setup_logging()
    try:
        config = load_config(_config_path(args), args.overrides)
    except (OSError, ValueError) as error:
        print(f"mozart train: {error}", file=sys.stderr)
        return 2
    if args.publish and config.export_dir is None:
        print(
            "mozart train: --publish needs export_dir (e.g. --set export_dir=models)",
            file=sys.stderr,
        )
        return 2
    try:
        outcome = run_training(config, resume=args.resume, publish_version=args.publish)
    except PublishError as error:
        print(f"mozart train: the run is in MLflow but was not published: {error}", file=sys.stderr)
        return 1
    print(f"run {outcome.run_id}")
    for name, value in sorted(outcome.metrics.items()):
        print(f"  {name} = {value:.4f}")
    print(
        f"  parameters = {outcome.parameters}, MACs/window = {outcome.macs_per_window}, "
        f"ONNX bytes = {outcome.onnx_bytes}"
    )
    if outcome.registration is not None:
        print(
            f"registered {outcome.registration.name} v{outcome.registration.version}: "
            f"{outcome.registration.reason}"
        )
    if outcome.published is not None:
        print(
            f"published {outcome.published.name} version {outcome.published.version} "
            f"to {outcome.published.folder}"
        )
    return 0


def _tune(args: argparse.Namespace) -> int:
    from mozart_trainer.config import load_config  # noqa: PLC0415
    from mozart_trainer.tune import tune  # noqa: PLC0415

    setup_logging()
    try:
        config = load_config(_config_path(args), args.overrides)
    except (OSError, ValueError) as error:
        print(f"mozart train tune: {error}", file=sys.stderr)
        return 2
    if args.trials < 1:
        print("mozart train tune: --trials must be at least 1", file=sys.stderr)
        return 2
    result = tune(config, args.trials)
    print(f"best val macro-F1 {result.best_value:.4f} with {result.best_params}")
    print(f"{result.n_trials} trials, {result.n_pruned} pruned")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from mozart_trainer.assess import accuracy_table, evaluate_version  # noqa: PLC0415
    from mozart_trainer.corpus import list_splits  # noqa: PLC0415

    setup_logging()
    model_dir: Path = args.model_dir
    data_root: Path = args.data
    for required in (model_dir / "model.onnx", model_dir / "model.json", data_root):
        if not required.exists():
            print(f"mozart evaluate: {required} does not exist", file=sys.stderr)
            return 2
    splits: list[str] = args.split or [
        s for s in list_splits(data_root) if s not in {args.baseline_split, "val"}
    ]
    out_dir: Path = args.out or model_dir / "evaluation"
    baseline = None if args.no_baseline else args.baseline_split
    report = evaluate_version(
        model_dir, data_root, splits, baseline_train_split=baseline, out_dir=out_dir
    )
    print(accuracy_table(report))
    print(f"report: {out_dir / 'evaluation.json'}")
    return 0


def _thresholds(args: argparse.Namespace) -> int:
    from mozart_trainer.thresholds import (  # noqa: PLC0415
        as_record,
        compute_thresholds,
        record_thresholds,
    )

    setup_logging()
    for required in (args.model_dir / "model.onnx", args.model_dir / "model.json", args.data):
        if not required.exists():
            print(f"mozart thresholds: {required} does not exist", file=sys.stderr)
            return 2
    thresholds = compute_thresholds(
        args.model_dir,
        args.data,
        silence_quantile=args.silence_quantile,
        silence_margin_db=args.silence_margin_db,
        target_precision=args.target_precision,
    )
    print(json.dumps(as_record(thresholds), indent=2))
    if args.write:
        record_thresholds(args.model_dir, thresholds)
        print(f"recorded in {args.model_dir / 'model.json'} (result_thresholds)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from mozart_trainer.pipeline import export_checkpoint  # noqa: PLC0415

    setup_logging()
    if not args.checkpoint.is_file():
        print(f"mozart export: {args.checkpoint} does not exist", file=sys.stderr)
        return 2
    if not args.out.name.isdigit() or int(args.out.name) < 1:
        print("mozart export: --out must be models/<name>/<positive version>", file=sys.stderr)
        return 2
    out = export_checkpoint(args.checkpoint, args.out, args.data)
    print(f"exported {out / 'model.onnx'} and {out / 'model.json'} (parity checked)")
    return 0


def register(subparsers: Any) -> None:
    """Adds `train` (with `train tune`), `evaluate`, `thresholds` and `export` to `mozart`."""
    train = subparsers.add_parser(
        "train", help="train the audio CNN, export, evaluate and track it in MLflow"
    )
    _add_config_options(train)
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train.add_argument(
        "--publish",
        action="store_true",
        help="then publish the run as the next version in export_dir (mozart models publish)",
    )
    train.set_defaults(handler=_train)
    train_commands = train.add_subparsers(title="train commands", metavar="COMMAND")
    tune_parser = train_commands.add_parser(
        "tune", help="Optuna search, one MLflow child run per trial"
    )
    _add_config_options(tune_parser)
    tune_parser.add_argument("--trials", type=int, default=10, help="number of trials")
    tune_parser.set_defaults(handler=_tune)

    evaluate = subparsers.add_parser(
        "evaluate", help="score a model version on a dataset, with the logistic-regression baseline"
    )
    evaluate.add_argument("model_dir", type=Path, help="models/<name>/<version>")
    evaluate.add_argument("--data", type=Path, required=True, help="dataset root")
    evaluate.add_argument(
        "--split", action="append", help="split to report (repeatable; default: all but train/val)"
    )
    evaluate.add_argument("--baseline-split", default="train", help="split the baseline trains on")
    evaluate.add_argument("--no-baseline", action="store_true", help="skip the baseline")
    evaluate.add_argument("--out", type=Path, default=None, help="report folder")
    evaluate.set_defaults(handler=_evaluate)

    thresholds = subparsers.add_parser(
        "thresholds",
        help="measure a version's silence (train RMS) and low-confidence (val) thresholds",
    )
    thresholds.add_argument("model_dir", type=Path, help="models/<name>/<version>")
    thresholds.add_argument("--data", type=Path, required=True, help="dataset root (train, val)")
    thresholds.add_argument(
        "--silence-quantile", type=float, default=0.001, help="quantile of the train windows' RMS"
    )
    thresholds.add_argument(
        "--silence-margin-db", type=float, default=20.0, help="dB below that quantile"
    )
    thresholds.add_argument(
        "--target-precision", type=float, default=0.5, help="precision the kept val windows reach"
    )
    thresholds.add_argument("--write", action="store_true", help="record them in model.json")
    thresholds.set_defaults(handler=_thresholds)

    export = subparsers.add_parser(
        "export", help="export a training checkpoint to ONNX as a model repository version"
    )
    export.add_argument("checkpoint", type=Path, help="last.pt from mozart train")
    export.add_argument("--out", type=Path, required=True, help="models/<name>/<version>")
    export.add_argument("--data", type=Path, default=None, help="dataset for parity and stats")
    export.set_defaults(handler=_export)
