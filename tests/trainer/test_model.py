"""The CNN's outputs, heads and size accounting."""

from __future__ import annotations

import torch

from mozart_trainer.augment import random_eq
from mozart_trainer.config import AugmentSettings
from mozart_trainer.frontend import FrontEndConfig
from mozart_trainer.model import AudioCNN, ModelConfig, count_parameters, macs_per_window

WINDOW = 48_000


def test_multiclass_outputs_softmax_logits_and_embedding() -> None:
    model = AudioCNN(5, "multiclass", FrontEndConfig(), ModelConfig(embedding_dim=24)).eval()
    with torch.no_grad():
        probabilities, logits, embedding = model(torch.randn(3, WINDOW) * 0.1)
    assert probabilities.shape == logits.shape == (3, 5)
    assert embedding.shape == (3, 24)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(3))
    torch.testing.assert_close(probabilities, torch.softmax(logits, dim=1))


def test_multilabel_head_is_sigmoid() -> None:
    model = AudioCNN(4, "multilabel", FrontEndConfig(), ModelConfig()).eval()
    with torch.no_grad():
        probabilities, logits, _ = model(torch.randn(2, WINDOW) * 0.1)
    torch.testing.assert_close(probabilities, torch.sigmoid(logits))


def test_the_dft_basis_is_fixed_and_not_counted() -> None:
    model = AudioCNN(6, "multiclass", FrontEndConfig(), ModelConfig())
    assert not model.front_end.stft.weight.requires_grad
    trainable = count_parameters(model)
    everything = sum(p.numel() for p in model.parameters())
    assert everything - trainable == model.front_end.stft.weight.numel()


def test_macs_grow_with_the_channels() -> None:
    small = AudioCNN(6, "multiclass", FrontEndConfig(), ModelConfig(channels=(8, 16, 32, 64)))
    large = AudioCNN(6, "multiclass", FrontEndConfig(), ModelConfig(channels=(16, 32, 64, 128)))
    config = FrontEndConfig()
    stft_macs = config.n_fft * (config.n_fft // 2 + 1) * 2 * config.n_frames(WINDOW)
    assert stft_macs < macs_per_window(small, WINDOW) < macs_per_window(large, WINDOW)


def test_random_eq_tilts_each_example_smoothly_within_its_bound() -> None:
    settings = AugmentSettings(eq_db=12.0)
    log_mel = torch.zeros(4, 1, 64, 10)
    tilted = random_eq(log_mel, settings, 1.0, torch.Generator().manual_seed(0))
    curve = tilted[:, 0, :, 0]
    # One curve per example, the same in every frame, within +/-12 dB in natural-log units.
    torch.testing.assert_close(tilted, curve[:, None, :, None].expand_as(tilted))
    assert float(curve.abs().max()) <= 12.0 / 10.0 * 2.303 * 2.0
    assert not torch.allclose(curve[0], curve[1])
    assert float((curve[:, 1:] - curve[:, :-1]).abs().max()) < 0.5
    untouched = random_eq(log_mel, AugmentSettings(eq_db=0.0), 1.0, torch.Generator())
    assert torch.equal(untouched, log_mel)
