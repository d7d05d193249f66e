"""Training-time augmentation: random gain and noise on waveforms, SpecAugment masks and mixup.

Time shift happens where windows are drawn (`training.draw_starts`), so a shifted
window holds real neighbouring audio rather than a wrapped-around copy.
"""

from __future__ import annotations

import math

import torch

from mozart_trainer.config import AugmentSettings


def augment_waveform(
    waveform: torch.Tensor, settings: AugmentSettings, generator: torch.Generator
) -> torch.Tensor:
    """Random gain in +/- ``gain_db`` and white noise at an SNR drawn from the range."""
    batch = waveform.shape[0]
    gain_db = (torch.rand(batch, 1, generator=generator) * 2.0 - 1.0) * settings.gain_db
    out = waveform * torch.pow(10.0, gain_db / 20.0)
    low, high = settings.noise_snr_db
    snr_db = low + torch.rand(batch, 1, generator=generator) * (high - low)
    signal_power = out.pow(2).mean(dim=1, keepdim=True).clamp_min(1e-10)
    noise_std = torch.sqrt(signal_power / torch.pow(10.0, snr_db / 10.0))
    noise = torch.randn(out.shape, generator=generator) * noise_std
    return out + noise


def spec_augment(
    log_mel: torch.Tensor, settings: AugmentSettings, generator: torch.Generator
) -> torch.Tensor:
    """One frequency mask and one time mask per example, filled with zero (the normalised mean)."""
    batch, _, n_mels, n_frames = log_mel.shape
    out = log_mel.clone()
    for row in range(batch):
        for size, limit, axis in (
            (settings.freq_mask_bands, n_mels, 2),
            (settings.time_mask_frames, n_frames, 3),
        ):
            if size <= 0:
                continue
            width = int(torch.randint(0, size + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, limit - width), (1,), generator=generator))
            if axis == 2:
                out[row, :, start : start + width, :] = 0.0
            else:
                out[row, :, :, start : start + width] = 0.0
    return out


def random_eq(
    log_mel: torch.Tensor, settings: AugmentSettings, norm_std: float, generator: torch.Generator
) -> torch.Tensor:
    """Adds a smooth random curve over the mel bands to each example: a random equaliser.

    A log spectrum's static envelope is much of what tells instruments apart;
    tilting it at random makes that envelope an unreliable cue, so the model
    must use the notes. The curve is half the sum of the first four cosines over
    the band index with weights uniform in +/-1, times ``eq_db`` dB: mostly
    within +/- ``eq_db``, never beyond twice that.
    """
    if settings.eq_db <= 0.0:
        return log_mel
    batch, _, n_mels, _ = log_mel.shape
    bands = (torch.arange(n_mels, dtype=log_mel.dtype) + 0.5) / n_mels
    basis = torch.stack([torch.cos(torch.pi * k * bands) for k in range(1, 5)])  # [4, mels]
    weights = torch.rand(batch, 4, generator=generator) * 2.0 - 1.0
    curve = weights @ basis / 2.0
    # dB of power -> natural log, then into the front end's normalised units.
    scale = settings.eq_db / 10.0 * math.log(10.0) / norm_std
    return log_mel + (scale * curve)[:, None, :, None]


def mixup(
    log_mel: torch.Tensor, targets: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixes each example with a shuffled partner; targets are soft (one-hot) label vectors."""
    if alpha <= 0.0:
        return log_mel, targets
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.random.fork_rng():
        # Beta sampling has no generator argument; seeding a forked global RNG from
        # ours keeps runs resumable bit for bit.
        torch.manual_seed(seed)
        weight = float(torch.distributions.Beta(alpha, alpha).sample())
    order = torch.randperm(log_mel.shape[0], generator=generator)
    mixed = weight * log_mel + (1.0 - weight) * log_mel[order]
    return mixed, weight * targets + (1.0 - weight) * targets[order]
