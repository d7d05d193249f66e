"""The in-graph log-mel front end matches librosa and bakes in no data-dependent constants."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from mozart_trainer.frontend import FrontEndConfig, LogMelFrontEnd, mel_filterbank

CONFIG = FrontEndConfig()


def _music_like(seconds: float, seed: int) -> np.ndarray:
    """Harmonics sweeping over time plus noise, at a realistic level."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * CONFIG.sample_rate_hz)) / CONFIG.sample_rate_hz
    pitch = 220.0 * 2 ** (t / seconds)
    phase = 2 * np.pi * np.cumsum(pitch) / CONFIG.sample_rate_hz
    audio = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2
    return (audio + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def test_mel_filterbank_equals_librosa() -> None:
    ours = mel_filterbank(CONFIG)
    theirs = librosa.filters.mel(
        sr=CONFIG.sample_rate_hz,
        n_fft=CONFIG.n_fft,
        n_mels=CONFIG.n_mels,
        fmin=CONFIG.f_min_hz,
        fmax=CONFIG.f_max_hz,
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1])
def test_mel_power_and_log_mel_match_librosa(seed: int) -> None:
    audio = _music_like(3.0, seed)
    reference = librosa.feature.melspectrogram(
        y=audio.astype(np.float64),
        sr=CONFIG.sample_rate_hz,
        n_fft=CONFIG.n_fft,
        hop_length=CONFIG.hop_length,
        win_length=CONFIG.win_length,
        window="hann",
        center=False,
        power=2.0,
        n_mels=CONFIG.n_mels,
        fmin=CONFIG.f_min_hz,
        fmax=CONFIG.f_max_hz,
    )
    front_end = LogMelFrontEnd(CONFIG)
    with torch.no_grad():
        ours = front_end.mel_power(torch.from_numpy(audio)[None])[0].double().numpy()
        log_mel = front_end(torch.from_numpy(audio)[None])[0, 0].double().numpy()
    assert ours.shape == reference.shape == (CONFIG.n_mels, CONFIG.n_frames(len(audio)))
    relative = np.linalg.norm(ours - reference) / np.linalg.norm(reference)
    assert relative <= 1e-4
    reference_log = np.log(np.maximum(reference, CONFIG.log_floor))
    assert np.linalg.norm(log_mel - reference_log) / np.linalg.norm(reference_log) <= 1e-4


def test_each_window_is_transformed_independently_of_the_batch() -> None:
    """No statistic of the input leaks in: a window's features do not depend on its neighbours."""
    front_end = LogMelFrontEnd(FrontEndConfig(norm_mean=-5.0, norm_std=3.0))
    quiet = torch.from_numpy(_music_like(3.0, 0) * 0.01)[None]
    loud = torch.from_numpy(_music_like(3.0, 1) * 5.0)[None]
    with torch.no_grad():
        alone = front_end(quiet)
        together = front_end(torch.cat([quiet, loud]))[:1]
    torch.testing.assert_close(alone, together)


def test_silence_hits_the_fixed_floor() -> None:
    config = FrontEndConfig(norm_mean=-5.0, norm_std=3.0)
    with torch.no_grad():
        features = LogMelFrontEnd(config)(torch.zeros(1, 48_000))
    expected = (np.log(config.log_floor) - config.norm_mean) / config.norm_std
    np.testing.assert_allclose(features.numpy(), expected, rtol=1e-6)
