"""Temperature scaling: one temperature fitted on validation logits, folded into the head.

Dividing the classifier's last linear layer (weights and bias) by the temperature makes
the exported graph's `logits` the calibrated ones and its softmax the calibrated
probabilities, so every client and engine (ONNX Runtime, INT8, TensorRT) gets them with
no new node in the graph. Only multiclass models are scaled: a sigmoid per label would
need a temperature per label.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from torch import nn

from mozart_trainer.corpus import Split
from mozart_trainer.evaluate import FloatArray, expected_calibration_error, predict
from mozart_trainer.model import AudioCNN

#: The search range of log(temperature): a temperature between e^-3 and e^3.
LOG_TEMPERATURE_BOUNDS = (-3.0, 3.0)


@dataclass(frozen=True)
class Calibration:
    """The fitted temperature and the expected calibration error around it."""

    temperature: float
    fitted_on: str
    windows: int
    val_ece_before: float
    val_ece_after: float
    test_ece_before: float | None = None


def negative_log_likelihood(
    logits: FloatArray, labels: NDArray[np.int64], temperature: float
) -> float:
    """Mean cross-entropy of softmax(logits / temperature)."""
    log_probs = log_softmax(logits.astype(np.float64) / temperature, axis=1)
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: FloatArray, labels: NDArray[np.int64]) -> float:
    """The temperature that minimises the validation windows' negative log-likelihood."""
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
        bounds=LOG_TEMPERATURE_BOUNDS,
        method="bounded",
    )
    return float(np.exp(result.x))


def scaled_probabilities(logits: FloatArray, temperature: float) -> FloatArray:
    """softmax(logits / temperature) as float32."""
    probs: FloatArray = np.exp(log_softmax(logits.astype(np.float64) / temperature, axis=1))
    return probs.astype(np.float32)


def fold_temperature(model: AudioCNN, temperature: float) -> AudioCNN:
    """A copy of the model whose logits are divided by `temperature` (the original is kept)."""
    folded = copy.deepcopy(model)
    head = folded.classifier[-1]
    if not isinstance(head, nn.Linear):  # pragma: no cover - AudioCNN's head is linear
        raise TypeError(f"the classifier ends in {type(head).__name__}, not Linear")
    with torch.no_grad():
        head.weight.div_(temperature)
        if head.bias is not None:
            head.bias.div_(temperature)
    return folded


def calibrate(
    model: AudioCNN, val: Split, test: Split | None, window_samples: int
) -> tuple[AudioCNN, Calibration | None]:
    """Fits the temperature on `val` and returns the model with it folded in, and the
    record; a multilabel model comes back as it is, with no record."""
    if model.task != "multiclass":
        return model, None
    _, val_logits, _ = predict(model, val, window_samples)
    truth = val.window_labels
    temperature = fit_temperature(val_logits, truth)
    test_ece = None
    if test is not None:
        test_probs, _, _ = predict(model, test, window_samples)
        test_ece = round(expected_calibration_error(test_probs, test.window_labels), 6)
    record = Calibration(
        temperature=round(temperature, 6),
        fitted_on=val.name,
        windows=val.n_windows,
        val_ece_before=round(
            expected_calibration_error(scaled_probabilities(val_logits, 1.0), truth), 6
        ),
        val_ece_after=round(
            expected_calibration_error(scaled_probabilities(val_logits, temperature), truth), 6
        ),
        test_ece_before=test_ece,
    )
    return fold_temperature(model, temperature), record
