"""model.json: the manifest the server reads (docs/model-repository.md, schema_version 1)."""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from mozart_trainer.corpus import Split
from mozart_trainer.evaluate import FloatArray
from mozart_trainer.model import AudioCNN

SCHEMA_VERSION = 1
RMS_HISTOGRAM_EDGES_DB = tuple(float(x) for x in np.arange(-80.0, 1.0, 5.0))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TensorSpec(_Frozen):
    """One graph input or output."""

    name: str
    dtype: str
    shape: list[int]


class Provenance(_Frozen):
    """Where the model came from."""

    dataset_digest: str
    git_commit: str
    mlflow_run_id: str
    metrics: dict[str, float]
    created_at: str


class RmsHistogram(_Frozen):
    """Window RMS in dBFS: ``counts[i]`` windows fall in ``[edges[i], edges[i+1])``."""

    edges: list[float]
    counts: list[int]


class ReferenceStats(_Frozen):
    """Drift references measured on the validation split."""

    mel_mean: list[float]
    mel_std: list[float]
    rms_histogram: RmsHistogram
    class_distribution: dict[str, float]


class SilenceThreshold(_Frozen):
    """Windows below `rms_dbfs` are silent (mozart_trainer/thresholds.py says how it is chosen)."""

    rms_dbfs: float
    method: str
    split: str
    windows: int
    quantile: float
    quantile_dbfs: float
    margin_db: float
    min_dbfs: float
    median_dbfs: float


class ConfidenceThreshold(_Frozen):
    """Windows whose top-1 score is below `min_top_score` are low-confidence; `precision`
    and `coverage` are those of the windows at or above it, on `split`."""

    min_top_score: float
    method: str
    split: str
    windows: int
    precision: float
    #: Wilson 95 % interval of `precision`.
    precision_interval_95: list[float]
    coverage: float
    precision_all_windows: float
    target_precision: float


class ResultThresholds(_Frozen):
    """model.json `result_thresholds`: how the server flags silent and unsure windows."""

    silence: SilenceThreshold | None = None
    low_confidence: ConfidenceThreshold | None = None
    dataset_digest: str = ""


class ModelManifest(_Frozen):
    """The whole of model.json."""

    schema_version: int = SCHEMA_VERSION
    name: str
    version: str
    task: Literal["multiclass", "multilabel"]
    labels: list[str]
    sample_rate_hz: int
    window_samples: int
    default_hop_ms: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    front_end: dict[str, Any]
    provenance: Provenance
    reference_stats: ReferenceStats
    #: Optimized artifacts, written by `mozart optimize` (its records, kept as they are).
    artifacts: list[dict[str, Any]] = []
    #: Silence and low-confidence thresholds, written by `mozart thresholds`.
    result_thresholds: ResultThresholds | None = None

    def write(self, path: Path) -> None:
        """Writes the manifest as indented JSON (without thresholds it has none)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        record = self.model_dump(mode="json")
        if record["result_thresholds"] is None:
            del record["result_thresholds"]
        path.write_text(json.dumps(record, indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> ModelManifest:
        """Reads and validates a model.json."""
        return cls.model_validate_json(path.read_text())


def git_commit(repo: Path | None = None) -> str:
    """The current commit of the working tree, or ``unknown`` outside git."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH is the point
            capture_output=True,
            text=True,
            check=True,
            cwd=repo,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return completed.stdout.strip()


def now_iso() -> str:
    """The current UTC time in ISO 8601."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def reference_stats(
    model: AudioCNN, split: Split, probs: FloatArray, labels: list[str], window_samples: int
) -> ReferenceStats:
    """Per-mel-band log-mel mean/std, an RMS histogram and the predicted-class distribution."""
    band_sum = np.zeros(model.front_end.config.n_mels)
    band_sq = np.zeros_like(band_sum)
    frames = 0
    rms_db: list[float] = []
    with torch.no_grad():
        for offset in range(0, split.n_windows, 64):
            indices = np.arange(offset, min(offset + 64, split.n_windows))
            waveform = split.windows(indices, window_samples)
            features = model.front_end(torch.from_numpy(waveform)).squeeze(1).double().numpy()
            band_sum += features.sum(axis=(0, 2))
            band_sq += (features**2).sum(axis=(0, 2))
            frames += features.shape[0] * features.shape[2]
            rms = np.sqrt(np.mean(waveform.astype(np.float64) ** 2, axis=1))
            rms_db.extend(20.0 * np.log10(np.maximum(rms, 1e-10)))
    mean = band_sum / frames
    std = np.sqrt(np.maximum(band_sq / frames - mean**2, 0.0))
    edges = list(RMS_HISTOGRAM_EDGES_DB)
    counts, _ = np.histogram(np.clip(rms_db, edges[0], edges[-1]), bins=edges)
    predicted = np.bincount(probs.argmax(axis=1), minlength=len(labels)) / max(1, len(probs))
    return ReferenceStats(
        mel_mean=[round(float(x), 6) for x in mean],
        mel_std=[round(float(x), 6) for x in std],
        rms_histogram=RmsHistogram(edges=edges, counts=[int(c) for c in counts]),
        class_distribution={
            label: round(float(p), 6) for label, p in zip(labels, predicted, strict=True)
        },
    )
