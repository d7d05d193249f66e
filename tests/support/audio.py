"""Test audio: music-like clips generated from a seed, and encoders for every API encoding."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import soundfile

from mozart_proto.v1 import audio_classifier_pb2 as pb

FloatArray = npt.NDArray[np.float32]

_CONTAINERS: dict[int, tuple[str, str]] = {
    pb.AUDIO_ENCODING_WAV: ("WAV", "PCM_16"),
    pb.AUDIO_ENCODING_FLAC: ("FLAC", "PCM_16"),
    pb.AUDIO_ENCODING_OGG: ("OGG", "VORBIS"),
}


def music_clip(seconds: float, sample_rate_hz: int = 16_000, seed: int = 0) -> FloatArray:
    """A mono clip of notes with harmonics, loudness changes and a little noise, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    total = round(seconds * sample_rate_hz)
    t = np.arange(total) / sample_rate_hz
    clip = np.zeros(total)
    note_s = 0.25
    for start in range(0, total, max(1, round(note_s * sample_rate_hz))):
        stop = min(total, start + round(note_s * sample_rate_hz))
        pitch = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        loudness = rng.uniform(0.05, 0.5)
        segment = t[start:stop]
        for harmonic in (1, 2, 3):
            clip[start:stop] += loudness / harmonic * np.sin(2 * np.pi * pitch * harmonic * segment)
    clip += rng.normal(0, 0.005, total)
    return np.clip(clip, -1.0, 1.0).astype(np.float32)


def encode(samples: FloatArray, sample_rate_hz: int, encoding: int, channels: int = 1) -> bytes:
    """Encodes mono samples as the given AudioEncoding (stereo duplicates the channel)."""
    frames = np.repeat(samples[:, np.newaxis], channels, axis=1)
    if encoding == pb.AUDIO_ENCODING_PCM_S16LE:
        return (np.clip(frames, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()
    if encoding == pb.AUDIO_ENCODING_PCM_F32LE:
        return frames.astype("<f4").tobytes()
    container, subtype = _CONTAINERS[encoding]
    buffer = io.BytesIO()
    soundfile.write(buffer, frames, sample_rate_hz, format=container, subtype=subtype)
    return buffer.getvalue()
