"""Response checks of the load users: a wrong shape, NaN or scores not summing to 1 fail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SCORE_SUM_TOLERANCE = 1e-3


class ResponseError(Exception):
    """A response that arrived but is wrong."""


@dataclass(frozen=True)
class ModelFacts:
    """What the checks need to know about the model."""

    labels: int
    multiclass: bool
    sample_rate_hz: int
    window_samples: int


def check_scores(scores: Sequence[float], facts: ModelFacts) -> None:
    """Raises ResponseError when scores have the wrong length, hold NaN or do not sum to 1.

    Multiclass scores are softmax probabilities and sum to 1; multilabel ones are
    independent sigmoids and only need to lie in [0, 1].
    """
    if len(scores) != facts.labels:
        raise ResponseError(f"{len(scores)} scores for {facts.labels} labels")
    values = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ResponseError("a score is NaN or infinite")
    if facts.multiclass and abs(values.sum() - 1.0) > SCORE_SUM_TOLERANCE:
        raise ResponseError(f"multiclass scores sum to {values.sum():.6f}, not 1")
    if not facts.multiclass and (values.min() < 0 or values.max() > 1):
        raise ResponseError("a multilabel score lies outside [0, 1]")
