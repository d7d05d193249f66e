"""Temperature scaling: the fit recovers a known temperature, and folding it into the head
divides the logits (the smoke pipeline test checks the exported graph and the report)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mozart_trainer.calibration import (
    calibrate,
    fit_temperature,
    negative_log_likelihood,
    scaled_probabilities,
)
from mozart_trainer.corpus import Split, list_labels, load_split
from mozart_trainer.evaluate import predict
from mozart_trainer.frontend import FrontEndConfig
from mozart_trainer.model import AudioCNN, ModelConfig

WINDOW = 48_000


def test_the_fit_recovers_the_temperature_that_made_the_labels() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 3.0, (20_000, 6)).astype(np.float32)
    truth_probs = scaled_probabilities(logits, 2.0)
    labels = np.array([rng.choice(6, p=p / p.sum()) for p in truth_probs], dtype=np.int64)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(2.0, rel=0.05)
    assert negative_log_likelihood(logits, labels, fitted) < negative_log_likelihood(
        logits, labels, 1.0
    )


def _splits(corpus: Path) -> dict[str, Split]:
    labels = list_labels(corpus, "train")
    return {
        name: load_split(
            corpus, name, labels, sample_rate_hz=16_000, window_samples=WINDOW,
            hop_samples=24_000,
        )
        for name in ("val", "test")
    }  # fmt: skip


def test_folding_divides_the_logits_and_leaves_the_model_alone(synthetic_corpus: Path) -> None:
    splits = _splits(synthetic_corpus)
    torch.manual_seed(0)
    model = AudioCNN(3, "multiclass", FrontEndConfig(), ModelConfig(channels=(8, 16)))
    _, raw_logits, _ = predict(model, splits["val"], WINDOW)
    folded, record = calibrate(model, splits["val"], splits["test"], WINDOW)
    assert record is not None
    assert (record.fitted_on, record.windows) == ("val", splits["val"].n_windows)
    assert record.test_ece_before is not None
    assert record.temperature != pytest.approx(1.0)
    _, still_raw, _ = predict(model, splits["val"], WINDOW)
    np.testing.assert_array_equal(still_raw, raw_logits)  # the original is untouched
    probabilities, logits, _ = predict(folded, splits["val"], WINDOW)
    np.testing.assert_allclose(logits, raw_logits / record.temperature, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        probabilities, scaled_probabilities(raw_logits, record.temperature), atol=1e-5
    )
    truth = splits["val"].window_labels
    assert negative_log_likelihood(raw_logits, truth, record.temperature) <= (
        negative_log_likelihood(raw_logits, truth, 1.0)
    )


def test_a_multilabel_model_is_left_as_it_is(synthetic_corpus: Path) -> None:
    splits = _splits(synthetic_corpus)
    model = AudioCNN(3, "multilabel", FrontEndConfig(), ModelConfig(channels=(8, 16)))
    same, record = calibrate(model, splits["val"], None, WINDOW)
    assert same is model
    assert record is None
