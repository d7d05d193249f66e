"""Result thresholds for model.json: a silence level from the training windows' RMS, and a
low-confidence score chosen on validation. What `mozart thresholds` computes and records.

The silence threshold is the level of the quietest training windows (a low quantile of
their RMS in dBFS) less a margin: the model has heard nothing that quiet, so its scores
there mean nothing. The confidence threshold is the smallest top-1 score at which the
validation windows scored at or above it are right at least `target_precision` of the
time; the record says what precision it buys at what coverage. Both are measured with
the exported model.onnx (ONNX Runtime), windows cut at the serving hop, as the server does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import binomtest

from mozart_trainer.assess import load_splits
from mozart_trainer.corpus import Split, dataset_digest
from mozart_trainer.evaluate import FloatArray, predict_probabilities
from mozart_trainer.export import INPUT_NAME, onnx_session
from mozart_trainer.manifest import (
    ConfidenceThreshold,
    ModelManifest,
    ResultThresholds,
    SilenceThreshold,
)

#: The amplitude floor of a level, as the server's (digital silence is -200 dBFS).
RMS_FLOOR = 1e-10
DEFAULT_SILENCE_QUANTILE = 0.001
DEFAULT_SILENCE_MARGIN_DB = 20.0
DEFAULT_TARGET_PRECISION = 0.5
#: Candidate confidence thresholds: every hundredth (scores are shown to two places).
CANDIDATES = np.round(np.arange(0.0, 1.0, 0.01), 2)


@dataclass(frozen=True)
class OperatingPoint:
    """Validation windows scored at or above `threshold`: their share, their accuracy, and
    how many they are."""

    threshold: float
    coverage: float
    precision: float
    kept: int

    def precision_interval(self) -> tuple[float, float]:
        """The 95 % Wilson interval of the precision."""
        right = round(self.precision * self.kept)
        interval = binomtest(right, self.kept).proportion_ci(0.95, method="wilson")
        return float(interval.low), float(interval.high)


def window_levels_dbfs(split: Split, window_samples: int) -> NDArray[np.float64]:
    """Every window's RMS in dBFS over the whole window (a short work's padding counts)."""
    levels = []
    for offset in range(0, split.n_windows, 256):
        windows = split.windows(
            np.arange(offset, min(offset + 256, split.n_windows)), window_samples
        )
        rms = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1))
        levels.append(20.0 * np.log10(np.maximum(rms, RMS_FLOOR)))
    return np.concatenate(levels)


def silence_threshold(
    levels: NDArray[np.float64], *, quantile: float, margin_db: float, split: str
) -> SilenceThreshold:
    """The `quantile` level of the training windows less `margin_db`, rounded to 0.1 dB."""
    reference = float(np.quantile(levels, quantile))
    return SilenceThreshold(
        rms_dbfs=round(reference - margin_db, 1),
        method=(
            f"the {quantile:g} quantile of the {split} windows' RMS ({reference:.1f} dBFS) "
            f"less {margin_db:g} dB"
        ),
        split=split,
        windows=len(levels),
        quantile=quantile,
        quantile_dbfs=round(reference, 1),
        margin_db=margin_db,
        min_dbfs=round(float(levels.min()), 1),
        median_dbfs=round(float(np.median(levels)), 1),
    )


def operating_points(probs: FloatArray, labels: NDArray[np.int64]) -> list[OperatingPoint]:
    """Coverage and precision of the windows kept at each candidate threshold."""
    top = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    points = []
    for threshold in CANDIDATES:
        kept = top >= threshold
        if not kept.any():
            break
        points.append(
            OperatingPoint(
                float(threshold),
                float(kept.mean()),
                float(correct[kept].mean()),
                int(kept.sum()),
            )
        )
    return points


def confidence_threshold(
    probs: FloatArray, labels: NDArray[np.int64], *, target_precision: float, split: str
) -> ConfidenceThreshold:
    """The smallest threshold whose kept windows reach `target_precision`; when none does,
    the one of highest precision that keeps at least a tenth of the windows."""
    points = operating_points(probs, labels)
    reaching = [p for p in points if p.precision >= target_precision]
    if reaching:
        chosen = reaching[0]
        rule = (
            f"the smallest top-1 score whose kept {split} windows are right >= {target_precision:g}"
        )
    else:
        chosen = max((p for p in points if p.coverage >= 0.1), key=lambda p: p.precision)
        rule = (
            f"no threshold reaches precision {target_precision:g} on {split}: the one of "
            "highest precision keeping >= 0.1 of the windows"
        )
    everything = points[0]
    low, high = chosen.precision_interval()
    return ConfidenceThreshold(
        min_top_score=chosen.threshold,
        method=rule,
        split=split,
        windows=len(labels),
        precision=round(chosen.precision, 4),
        precision_interval_95=[round(low, 4), round(high, 4)],
        coverage=round(chosen.coverage, 4),
        precision_all_windows=round(everything.precision, 4),
        target_precision=target_precision,
    )


def compute_thresholds(
    model_dir: Path,
    data_root: Path,
    *,
    silence_quantile: float = DEFAULT_SILENCE_QUANTILE,
    silence_margin_db: float = DEFAULT_SILENCE_MARGIN_DB,
    target_precision: float = DEFAULT_TARGET_PRECISION,
) -> ResultThresholds:
    """Both thresholds of a model version on a dataset's `train` and `val` splits."""
    manifest = ModelManifest.read(model_dir / "model.json")
    session = onnx_session(model_dir / "model.onnx")

    def score(waveform: FloatArray) -> FloatArray:
        result: FloatArray = session.run(["probabilities"], {INPUT_NAME: waveform})[0]
        return result

    splits = load_splits(data_root, ["train", "val"], manifest)
    levels = window_levels_dbfs(splits["train"], manifest.window_samples)
    val = splits["val"]
    probs = predict_probabilities(score, val, manifest.window_samples)
    return ResultThresholds(
        silence=silence_threshold(
            levels, quantile=silence_quantile, margin_db=silence_margin_db, split="train"
        ),
        low_confidence=confidence_threshold(
            probs, val.window_labels, target_precision=target_precision, split="val"
        ),
        dataset_digest=dataset_digest(data_root),
    )


def record_thresholds(model_dir: Path, thresholds: ResultThresholds) -> None:
    """Writes the thresholds into the version's model.json, keeping everything else."""
    path = model_dir / "model.json"
    record = json.loads(path.read_text())
    record["result_thresholds"] = as_record(thresholds)
    ModelManifest.model_validate(record)  # still a manifest the trainer reads
    path.write_text(json.dumps(record, indent=2) + "\n")


def as_record(thresholds: ResultThresholds) -> dict[str, Any]:
    """The thresholds as model.json holds them."""
    return thresholds.model_dump(mode="json")
