"""Decodes dataset files to mono float32 at a target rate (soundfile, then soxr)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile
import soxr
from numpy.typing import NDArray

from mozart_trainer.data.manifest import DatasetManifest, ManifestEntry


def load_audio(path: Path, sample_rate_hz: int | None = None) -> tuple[NDArray[np.float32], int]:
    """Decodes a file to mono float32; resamples when ``sample_rate_hz`` is given.

    Returns:
        The samples and their sample rate.

    Raises:
        soundfile.LibsndfileError: the file cannot be decoded.
    """
    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if sample_rate_hz is not None and rate != sample_rate_hz:
        mono = soxr.resample(mono, rate, sample_rate_hz, quality="HQ")
        rate = sample_rate_hz
    return np.ascontiguousarray(mono, dtype=np.float32), rate


def iter_split(
    root: Path, manifest: DatasetManifest, split: str, sample_rate_hz: int
) -> Iterator[tuple[ManifestEntry, NDArray[np.float32]]]:
    """Yields every entry of a split with its audio, mono float32 at ``sample_rate_hz``."""
    for entry in manifest.split(split):
        audio, _ = load_audio(root / entry.path, sample_rate_hz)
        yield entry, audio
