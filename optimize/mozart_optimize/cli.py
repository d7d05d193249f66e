"""`mozart optimize <model-version-dir>`: build, gate and record the optimized artifacts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mozart_optimize import analyze_cli
from mozart_optimize.gates import Thresholds

EXIT_REFUSED = 1
EXIT_USAGE = 2
DEFAULT_DATA = Path("data/corpus/default")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _optimize(args: argparse.Namespace) -> int:
    # Imported here so that `mozart --help` does not load ONNX Runtime's quantizer.
    from pydantic import ValidationError  # noqa: PLC0415

    from mozart_optimize.pipeline import Options, optimize, parse_stages  # noqa: PLC0415
    from mozart_optimize.report import write_report  # noqa: PLC0415

    version_dir: Path = args.model_dir
    try:
        stages = parse_stages(args.only)
        batch_sizes = tuple(sorted({int(size) for size in args.batch_sizes.split(",")}))
    except ValueError as error:
        print(f"mozart optimize: {error}", file=sys.stderr)
        return EXIT_USAGE
    if not args.data.is_dir():
        print(f"mozart optimize: no dataset at {args.data} (build the default one with "
              "`mozart data build-corpus --out data/corpus/default`, or pass --data)",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    if 1 not in batch_sizes:
        print("mozart optimize: --batch-sizes must include 1 (batch-1 latency)", file=sys.stderr)
        return EXIT_USAGE
    options = Options(
        data_root=args.data,
        gate_splits=tuple(args.gate_split or ("test", "test_timbre")),
        calibration_split=args.calibration_split,
        calibration_windows=args.calibration_windows,
        seed=args.seed,
        stages=stages,
        thresholds=Thresholds(
            min_agreement=args.min_agreement,
            max_accuracy_drop_points=args.max_accuracy_drop,
            max_abs_difference=args.max_abs_difference,
            min_speedup=args.min_speedup,
        ),
        batch_sizes=batch_sizes,
        speed_seconds=args.speed_seconds,
        reference_provider=args.reference_provider,
    )
    try:
        run = optimize(version_dir, options, say=_say)
    except (FileNotFoundError, ValidationError) as error:
        print(f"mozart optimize: {error}", file=sys.stderr)
        return EXIT_USAGE
    markdown, data = write_report(run, args.out_report or version_dir / "optimize")
    print(markdown.read_text())
    print(f"report: {markdown} and {data}")
    return EXIT_REFUSED if run.failed else 0


def register(subparsers: Any) -> None:
    """Adds `optimize` and `analyze` to the `mozart` command (entry point group mozart.commands)."""
    analyze_cli.register(subparsers)
    parser = subparsers.add_parser(
        "optimize",
        help="build INT8 and TensorRT artifacts of a model version, gated on accuracy and speed",
        description="Builds the optimized artifacts of a model version (ORT's FP32 graph "
        "optimization, static INT8 QDQ, a TensorRT plan), admits each only when it agrees "
        "with FP32 on real corpus windows and is faster, and lists it in model.json. Exits 1 "
        "when a gate refused an artifact. See docs/optimize.md.",
    )
    parser.add_argument("model_dir", type=Path, help="models/<name>/<version>")
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="dataset root (default: %(default)s)"
    )
    parser.add_argument(
        "--only",
        default="opt,int8,tensorrt",
        help="stages to run, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--gate-split",
        action="append",
        help="split the accuracy gate scores (repeatable; default: test and test_timbre)",
    )
    parser.add_argument(
        "--calibration-split",
        default="train",
        help="split the INT8 calibration windows come from (default: %(default)s)",
    )
    parser.add_argument(
        "--calibration-windows",
        type=int,
        default=256,
        help="calibration sample size (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the calibration sample (default: %(default)s)"
    )
    defaults = Thresholds()
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=defaults.min_agreement,
        help="least top-1 agreement with FP32 per split (default: %(default)s)",
    )
    parser.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=defaults.max_accuracy_drop_points,
        help="largest window-accuracy drop in points per split (default: %(default)s)",
    )
    parser.add_argument(
        "--max-abs-difference",
        type=float,
        default=defaults.max_abs_difference,
        help="FP32 rewrites: largest probability difference (default: %(default)s)",
    )
    parser.add_argument(
        "--min-speedup",
        type=float,
        default=defaults.min_speedup,
        help="best throughput must be above this many times FP32's (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-sizes",
        default="1,4,8,16",
        help="batch sizes timed, up to max_batch_size (default: %(default)s)",
    )
    parser.add_argument(
        "--speed-seconds",
        type=float,
        default=3.0,
        help="seconds timed per batch size and engine (default: %(default)s)",
    )
    parser.add_argument(
        "--reference-provider",
        default="CPUExecutionProvider",
        help="ORT provider of the FP32 reference a TensorRT plan is timed against "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--out-report",
        type=Path,
        default=None,
        help="report folder (default: <model_dir>/optimize)",
    )
    parser.set_defaults(handler=_optimize)
