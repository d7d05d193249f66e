"""Writes small real audio files (noisy tones) for the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile


def noisy_tone(seconds: float, sample_rate_hz: int, seed: int, level: float = 0.3) -> np.ndarray:
    """A tone with a little noise: never silent, never clipped, different for every seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate_hz)) / sample_rate_hz
    audio = level * np.sin(2 * np.pi * rng.uniform(150, 900) * t)
    return (audio + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def write_tone(path: Path, seconds: float, sample_rate_hz: int, seed: int, **kwargs) -> Path:
    """Writes a noisy tone; the format follows the suffix (wav, flac, ogg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), noisy_tone(seconds, sample_rate_hz, seed), sample_rate_hz, **kwargs)
    return path
