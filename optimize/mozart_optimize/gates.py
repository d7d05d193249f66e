"""The gates an artifact must pass to be admitted: accuracy against FP32, then speed.

Accuracy is measured on every gate split (the test split and the timbre slice by
default): top-1 agreement with the FP32 model over windows, and the drop in window
accuracy. Speed is the best throughput over FP32's, measured in the same run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from mozart_server.tensors import FloatArray


@dataclass(frozen=True)
class Thresholds:
    """What admits an artifact; every one is a `mozart optimize` flag."""

    min_agreement: float = 0.99
    max_accuracy_drop_points: float = 0.5
    #: Parity of the FP32 graph rewrite: largest probability difference allowed.
    max_abs_difference: float = 1e-4
    #: An artifact is admitted only when its best throughput ratio is above this.
    min_speedup: float = 1.05


@dataclass(frozen=True)
class SplitAccuracy:
    """One split: the candidate's agreement with FP32 and both window accuracies."""

    split: str
    windows: int
    agreement: float
    reference_accuracy: float
    candidate_accuracy: float
    max_abs_difference: float

    @property
    def accuracy_drop_points(self) -> float:
        """FP32 window accuracy minus the candidate's, in percentage points."""
        return (self.reference_accuracy - self.candidate_accuracy) * 100

    def as_dict(self) -> dict[str, object]:
        """The figures as JSON-ready values."""
        values = {key: round(value, 6) if isinstance(value, float) else value
                  for key, value in asdict(self).items()}  # fmt: skip
        values["accuracy_drop_points"] = round(self.accuracy_drop_points, 3)
        return values


def split_accuracy(
    split: str, labels: np.ndarray, reference: FloatArray, candidate: FloatArray
) -> SplitAccuracy:
    """Compares the candidate's probabilities with the reference's on one split."""
    reference_top = reference.argmax(axis=1)
    candidate_top = candidate.argmax(axis=1)
    return SplitAccuracy(
        split=split,
        windows=len(labels),
        agreement=float(np.mean(reference_top == candidate_top)),
        reference_accuracy=float(np.mean(reference_top == labels)),
        candidate_accuracy=float(np.mean(candidate_top == labels)),
        max_abs_difference=float(np.max(np.abs(reference - candidate))),
    )


def accuracy_failures(
    results: Mapping[str, SplitAccuracy], thresholds: Thresholds, *, parity: bool
) -> list[str]:
    """Why the accuracy gate fails, one line per reason (empty: it passes).

    `parity` gates an FP32 rewrite on the largest probability difference instead.
    """
    failures = []
    for result in results.values():
        if parity:
            if result.max_abs_difference > thresholds.max_abs_difference:
                failures.append(
                    f"{result.split}: probabilities differ by up to {result.max_abs_difference:.2e}"
                    f" (allowed {thresholds.max_abs_difference:.0e})"
                )
            continue
        if result.agreement < thresholds.min_agreement:
            failures.append(
                f"{result.split}: top-1 agreement {result.agreement:.2%} with FP32 is below "
                f"{thresholds.min_agreement:.2%}"
            )
        if result.accuracy_drop_points > thresholds.max_accuracy_drop_points:
            failures.append(
                f"{result.split}: window accuracy drops {result.accuracy_drop_points:.2f} points "
                f"(allowed {thresholds.max_accuracy_drop_points:.2f})"
            )
    return failures


def speed_failures(best_throughput_ratio: float, thresholds: Thresholds) -> list[str]:
    """Why the speed gate fails (empty: it passes)."""
    if best_throughput_ratio > thresholds.min_speedup:
        return []
    return [
        f"best throughput is {best_throughput_ratio:.2f}x FP32's; it must be above "
        f"{thresholds.min_speedup:.2f}x to be worth serving"
    ]
