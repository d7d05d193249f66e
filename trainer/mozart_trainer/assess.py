"""Evaluates an exported model version on dataset splits: what `mozart evaluate` runs.

The CNN is scored by ONNX Runtime on the exported file, so the numbers are those
of the artifact that ships; `mozart train` calls this same code after export.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from mozart_trainer.calibration import Calibration
from mozart_trainer.corpus import Split, dataset_digest, load_split
from mozart_trainer.evaluate import (
    FloatArray,
    SplitReport,
    baseline_metrics,
    plot_confusion,
    predict_probabilities,
    report_split,
)
from mozart_trainer.export import INPUT_NAME, onnx_session
from mozart_trainer.frontend import FrontEndConfig, LogMelFrontEnd
from mozart_trainer.manifest import ModelManifest

REPORT_NAME = "evaluation.json"


@dataclass(frozen=True)
class EvaluationReport:
    """Per-split reports of one model version on one dataset."""

    model: str
    version: str
    dataset_digest: str
    labels: list[str]
    splits: list[SplitReport]
    #: The temperature folded into the graph and the ECE before and after (`mozart train`
    #: fills it; each split's `ece` is the exported, calibrated model's).
    calibration: Calibration | None = None

    def split(self, name: str) -> SplitReport:
        """The report of one split."""
        for report in self.splits:
            if report.split == name:
                return report
        raise KeyError(name)

    def write(self, path: Path) -> None:
        """Writes the report as JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def front_end_of(manifest: ModelManifest) -> FrontEndConfig:
    """The front-end configuration recorded in a manifest."""
    fields = {k: v for k, v in manifest.front_end.items() if k != "center"}
    return FrontEndConfig(sample_rate_hz=manifest.sample_rate_hz, **fields)


def load_splits(data_root: Path, names: Sequence[str], manifest: ModelManifest) -> dict[str, Split]:
    """Loads splits with the model's labels, sample rate, window and serving hop."""
    hop = manifest.sample_rate_hz * manifest.default_hop_ms // 1000
    return {
        name: load_split(
            data_root,
            name,
            manifest.labels,
            sample_rate_hz=manifest.sample_rate_hz,
            window_samples=manifest.window_samples,
            hop_samples=hop,
        )
        for name in names
    }


def evaluate_version(
    model_dir: Path,
    data_root: Path,
    splits: Sequence[str],
    *,
    baseline_train_split: str | None,
    out_dir: Path,
    seed: int = 0,
) -> EvaluationReport:
    """Scores a model version on the given splits and writes JSON plus confusion PNGs.

    Args:
        model_dir: ``models/<name>/<version>/`` holding model.onnx and model.json.
        data_root: dataset root with split folders.
        splits: the splits to report on.
        baseline_train_split: fit the logistic-regression baseline on this split
            and report it beside the CNN; None skips the baseline.
        out_dir: where evaluation.json and confusion_<split>.png go.
        seed: the baseline's seed.
    """
    manifest = ModelManifest.read(model_dir / "model.json")
    session = onnx_session(model_dir / "model.onnx")

    def score(waveform: FloatArray) -> FloatArray:
        result: FloatArray = session.run(["probabilities"], {INPUT_NAME: waveform})[0]
        return result

    loaded = load_splits(data_root, splits, manifest)
    reports = {
        name: report_split(
            predict_probabilities(score, split, manifest.window_samples), split, manifest.labels
        )
        for name, split in loaded.items()
    }
    if baseline_train_split is not None:
        train = load_splits(data_root, [baseline_train_split], manifest)[baseline_train_split]
        front_end = LogMelFrontEnd(front_end_of(manifest))
        baseline = baseline_metrics(
            front_end,
            train,
            list(loaded.values()),
            window_samples=manifest.window_samples,
            n_labels=len(manifest.labels),
            seed=seed,
        )
        reports = {
            name: replace(
                report,
                baseline_window_accuracy=baseline[name].accuracy,
                baseline_window_macro_f1=baseline[name].macro_f1,
            )
            for name, report in reports.items()
        }
    for report in reports.values():
        plot_confusion(report, manifest.labels, out_dir / f"confusion_{report.split}.png")
    evaluation = EvaluationReport(
        model=manifest.name,
        version=manifest.version,
        dataset_digest=dataset_digest(data_root),
        labels=manifest.labels,
        splits=list(reports.values()),
    )
    evaluation.write(out_dir / REPORT_NAME)
    return evaluation


def accuracy_table(report: EvaluationReport) -> str:
    """A short text table of the headline numbers, for the CLI and the model card."""
    lines = [
        "| split | works | windows | CNN window acc | CNN macro-F1 | CNN work acc | ECE "
        "| baseline window acc | baseline macro-F1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in report.splits:
        base_acc = (
            "-" if s.baseline_window_accuracy is None else f"{s.baseline_window_accuracy:.3f}"
        )
        base_f1 = "-" if s.baseline_window_macro_f1 is None else f"{s.baseline_window_macro_f1:.3f}"
        lines.append(
            f"| {s.split} | {s.n_works} | {s.n_windows} | {s.window_accuracy:.3f} "
            f"| {s.window_macro_f1:.3f} | {s.work_accuracy:.3f} | {s.ece:.3f} "
            f"| {base_acc} | {base_f1} |"
        )
    return "\n".join(lines)
