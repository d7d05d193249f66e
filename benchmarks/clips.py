"""Benchmark audio: real clips from disk, cut into segments and encoded for each API."""

from __future__ import annotations

import glob
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile
import soxr

FloatArray = npt.NDArray[np.float32]

DEFAULT_CLIPS = "demo/clips/*.flac"


@dataclass(frozen=True)
class Clip:
    """One decoded clip: mono float32 samples at the file's own rate."""

    name: str
    samples: FloatArray
    sample_rate_hz: int

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate_hz


def load_clips(pattern: str) -> list[Clip]:
    """Decodes every audio file matching the glob `pattern` (stereo is averaged to mono).

    Raises:
        FileNotFoundError: nothing matches, so the benchmark would have no real audio.
    """
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no audio files match {pattern!r}; pass --clips GLOB")
    clips = []
    for path in paths:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
        clips.append(Clip(Path(path).name, samples.mean(axis=1).astype(np.float32), int(rate)))
    return clips


def segments(
    clips: list[Clip], count: int, min_s: float, max_s: float, seed: int = 0
) -> list[Clip]:
    """Cuts `count` segments of min_s..max_s seconds at random places in the clips.

    A clip shorter than the drawn length is used whole.
    """
    rng = np.random.default_rng(seed)
    cut = []
    for index in range(count):
        clip = clips[index % len(clips)]
        length = min(len(clip.samples), round(rng.uniform(min_s, max_s) * clip.sample_rate_hz))
        start = int(rng.integers(0, len(clip.samples) - length + 1))
        cut.append(
            Clip(f"{clip.name}@{start}", clip.samples[start : start + length], clip.sample_rate_hz)
        )
    return cut


def resample(clip: Clip, rate_hz: int) -> FloatArray:
    """The clip's samples at `rate_hz` (soxr, the resampler the server uses)."""
    if clip.sample_rate_hz == rate_hz:
        return clip.samples
    return np.asarray(soxr.resample(clip.samples, clip.sample_rate_hz, rate_hz), np.float32)


def flac_bytes(clip: Clip) -> bytes:
    """The clip as a 16-bit FLAC file in memory."""
    buffer = io.BytesIO()
    soundfile.write(buffer, clip.samples, clip.sample_rate_hz, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def pcm_s16le(samples: FloatArray) -> bytes:
    """Raw little-endian 16-bit PCM of mono samples in [-1, 1]."""
    return (np.clip(samples, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()
