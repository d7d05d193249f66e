"""The load users' response checks: every kind of wrong answer is caught, right ones pass."""

from __future__ import annotations

import math

import pytest

from benchmarks.checks import ModelFacts, ResponseError, check_scores

MULTICLASS = ModelFacts(labels=4, multiclass=True, sample_rate_hz=16_000, window_samples=8_000)
MULTILABEL = ModelFacts(labels=3, multiclass=False, sample_rate_hz=16_000, window_samples=8_000)


def test_probabilities_that_sum_to_one_pass() -> None:
    check_scores([0.1, 0.2, 0.3, 0.4], MULTICLASS)
    check_scores([0.9, 0.9, 0.0], MULTILABEL)


@pytest.mark.parametrize(
    ("scores", "facts", "message"),
    [
        ([0.5, 0.5], MULTICLASS, "2 scores for 4 labels"),
        ([0.25, 0.25, 0.25, math.nan], MULTICLASS, "NaN"),
        ([0.25, 0.25, 0.25, math.inf], MULTICLASS, "NaN or infinite"),
        ([0.3, 0.3, 0.3, 0.3], MULTICLASS, "sum to 1.2"),
        ([0.5, 1.5, 0.0], MULTILABEL, "outside [0, 1]"),
    ],
)
def test_wrong_scores_are_failures(scores: list[float], facts: ModelFacts, message: str) -> None:
    with pytest.raises(ResponseError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_scores(scores, facts)
