"""Evaluation: window and work-level metrics, calibration, a confusion-matrix PNG, and the baseline.

The baseline is logistic regression on each window's mean log-mel vector (the
same front end, the same windows and split), so the CNN's margin over it is
the value the convolutional body adds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, f1_score, recall_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mozart_trainer.corpus import Split
from mozart_trainer.frontend import LogMelFrontEnd
from mozart_trainer.model import AudioCNN

PREDICT_BATCH = 64
ECE_BINS = 15

FloatArray = NDArray[np.float32]


@dataclass(frozen=True)
class WindowMetrics:
    """Window-level scores."""

    accuracy: float
    macro_f1: float


@dataclass(frozen=True)
class SplitReport:
    """Everything `mozart evaluate` reports for one split."""

    split: str
    n_works: int
    n_windows: int
    window_accuracy: float
    window_macro_f1: float
    work_accuracy: float
    ece: float
    per_class_recall: dict[str, float]
    confusion: list[list[int]]
    baseline_window_accuracy: float | None = None
    baseline_window_macro_f1: float | None = None


def predict(
    model: AudioCNN, split: Split, window_samples: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Runs the model over every window of a split: (probabilities, logits, embeddings)."""
    was_training = model.training
    model.eval()
    outputs: list[tuple[torch.Tensor, ...]] = []
    device = next(model.parameters()).device
    with torch.no_grad():
        for offset in range(0, split.n_windows, PREDICT_BATCH):
            indices = np.arange(offset, min(offset + PREDICT_BATCH, split.n_windows))
            waveform = torch.from_numpy(split.windows(indices, window_samples)).to(device)
            outputs.append(tuple(t.cpu() for t in model(waveform)))
    model.train(was_training)
    probs, logits, embeddings = (torch.cat(parts).numpy() for parts in zip(*outputs, strict=True))
    return probs, logits, embeddings


def window_metrics(probs: FloatArray, labels: NDArray[np.int64], n_labels: int) -> WindowMetrics:
    """Accuracy and macro-F1 of the arg-max prediction."""
    predicted = probs.argmax(axis=1)
    return WindowMetrics(
        accuracy=float((predicted == labels).mean()),
        macro_f1=float(
            f1_score(
                labels, predicted, labels=list(range(n_labels)), average="macro", zero_division=0
            )
        ),
    )


def expected_calibration_error(probs: FloatArray, labels: NDArray[np.int64]) -> float:
    """ECE over equal-width confidence bins of the top-1 probability."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1]), 0, ECE_BINS - 1)
    ece = 0.0
    for b in range(ECE_BINS):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def work_accuracy(probs: FloatArray, split: Split) -> float:
    """Accuracy of works classified by the mean of all their windows' probabilities.

    A work is the manifest's group (all excerpts of one movement or tune).
    """
    names, file_group = np.unique(np.asarray(split.groups), return_inverse=True)
    window_group = file_group[split.window_work]
    sums = np.zeros((len(names), probs.shape[1]))
    np.add.at(sums, window_group, probs)
    group_labels = np.zeros(len(names), dtype=np.int64)
    group_labels[file_group] = split.work_labels
    return float((sums.argmax(axis=1) == group_labels).mean())


def report_split(probs: FloatArray, split: Split, labels: list[str]) -> SplitReport:
    """Builds the full report for one split from the model's window probabilities."""
    truth = split.window_labels
    predicted = probs.argmax(axis=1)
    indices = list(range(len(labels)))
    metrics = window_metrics(probs, truth, len(labels))
    recall = recall_score(truth, predicted, labels=indices, average=None, zero_division=0)
    return SplitReport(
        split=split.name,
        n_works=len(set(split.groups)),
        n_windows=split.n_windows,
        window_accuracy=metrics.accuracy,
        window_macro_f1=metrics.macro_f1,
        work_accuracy=work_accuracy(probs, split),
        ece=expected_calibration_error(probs, truth),
        per_class_recall={label: float(r) for label, r in zip(labels, recall, strict=True)},
        confusion=confusion_matrix(truth, predicted, labels=indices).tolist(),
    )


def predict_probabilities(
    score: Callable[[FloatArray], FloatArray], split: Split, window_samples: int
) -> FloatArray:
    """Scores every window of a split in batches with any ``waveform -> probabilities`` function."""
    parts = [
        score(split.windows(np.arange(o, min(o + PREDICT_BATCH, split.n_windows)), window_samples))
        for o in range(0, split.n_windows, PREDICT_BATCH)
    ]
    return np.concatenate(parts).astype(np.float32)


def mean_log_mel(front_end: LogMelFrontEnd, split: Split, window_samples: int) -> FloatArray:
    """Each window's mean normalised log-mel vector ``[windows, n_mels]`` (the baseline's input)."""

    def features(waveform: FloatArray) -> FloatArray:
        with torch.no_grad():
            result: FloatArray = (
                front_end(torch.from_numpy(waveform)).mean(dim=3).squeeze(1).numpy()
            )
        return result

    return predict_probabilities(features, split, window_samples)


def baseline_metrics(
    front_end: LogMelFrontEnd,
    train: Split,
    evaluated: list[Split],
    *,
    window_samples: int,
    n_labels: int,
    seed: int,
) -> dict[str, WindowMetrics]:
    """Logistic regression on mean log-mel, fitted on train, scored on each evaluated split."""
    classifier = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed)
    )
    classifier.fit(mean_log_mel(front_end, train, window_samples), train.window_labels)
    results: dict[str, WindowMetrics] = {}
    for split in evaluated:
        probs = classifier.predict_proba(mean_log_mel(front_end, split, window_samples))
        full = np.zeros((len(probs), n_labels), dtype=np.float32)
        full[:, classifier.classes_] = probs
        results[split.name] = window_metrics(full, split.window_labels, n_labels)
    return results


def plot_confusion(report: SplitReport, labels: list[str], path: Path) -> None:
    """Writes the confusion matrix (rows: truth, columns: prediction) as a PNG."""
    import matplotlib  # noqa: PLC0415 - import only when plotting; pick a headless backend first

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    matrix = np.asarray(report.confusion)
    figure, axes = plt.subplots(figsize=(1.0 + 0.8 * len(labels), 0.8 + 0.7 * len(labels)))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"{report.split}: window accuracy {report.window_accuracy:.3f}")
    for (row, col), count in np.ndenumerate(matrix):
        axes.text(col, row, str(count), ha="center", va="center", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
