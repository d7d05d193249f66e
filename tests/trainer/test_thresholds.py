"""`mozart thresholds`: the rules on known numbers, and the shipped model's figures recompute."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mozart_trainer.manifest import ModelManifest
from mozart_trainer.paths import project_root
from mozart_trainer.thresholds import confidence_threshold, operating_points, silence_threshold
from tests.support.corpus import default_corpus

MODEL_DIR = project_root() / "models" / "composer-cnn" / "1"


def test_silence_is_a_low_quantile_of_the_training_levels_less_the_margin() -> None:
    levels = np.linspace(-40.0, -10.0, 1001)
    chosen = silence_threshold(levels, quantile=0.1, margin_db=20.0, split="train")
    assert chosen.quantile_dbfs == pytest.approx(-37.0)
    assert chosen.rms_dbfs == pytest.approx(-57.0)
    assert (chosen.min_dbfs, chosen.windows) == (-40.0, 1001)


def _probs(top: list[float], right: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Two-class rows with the given top score; label 0 is the top one when right."""
    probs = np.array([[p, 1.0 - p] for p in top], dtype=np.float32)
    labels = np.array([0 if ok else 1 for ok in right], dtype=np.int64)
    return probs, labels


def test_confidence_is_the_smallest_score_whose_kept_windows_reach_the_precision() -> None:
    # Scores 0.505 .. 0.955 (off the hundredths grid); the four below 0.7 are wrong, the
    # six above right but one: 0.66 is the first hundredth that keeps only those six.
    top = [0.505, 0.555, 0.605, 0.655, 0.705, 0.755, 0.805, 0.855, 0.905, 0.955]
    right = [False, False, False, False, True, True, False, True, True, True]
    probs, labels = _probs(top, right)
    chosen = confidence_threshold(probs, labels, target_precision=0.8, split="val")
    assert chosen.min_top_score == pytest.approx(0.66)
    assert chosen.coverage == pytest.approx(0.6)
    assert chosen.precision == pytest.approx(5 / 6, abs=1e-4)  # recorded to 4 places
    assert chosen.precision_all_windows == pytest.approx(0.5)
    low, high = chosen.precision_interval_95
    assert low < chosen.precision < high
    points = operating_points(probs, labels)
    assert [p.coverage for p in points] == sorted((p.coverage for p in points), reverse=True)


def test_an_unreachable_precision_falls_back_to_the_best_with_a_tenth_kept() -> None:
    probs, labels = _probs([0.6, 0.7, 0.8, 0.9], [True, False, False, False])
    chosen = confidence_threshold(probs, labels, target_precision=0.9, split="val")
    assert chosen.min_top_score == 0.0
    assert "no threshold reaches" in chosen.method


@pytest.mark.slow
def test_the_shipped_thresholds_recompute_from_the_default_corpus(tmp_path: Path) -> None:
    corpus = default_corpus()
    shipped = ModelManifest.read(MODEL_DIR / "model.json").result_thresholds
    assert shipped is not None
    completed = subprocess.run(
        [sys.executable, "-m", "mozart_proto.cli", "thresholds", str(MODEL_DIR),
         "--data", str(corpus)],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    printed = json.loads(completed.stdout[: completed.stdout.rindex("}") + 1])
    assert printed == shipped.model_dump(mode="json")
