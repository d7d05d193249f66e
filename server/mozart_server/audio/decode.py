"""Decoding whole clips (WAV, FLAC, OGG, raw PCM) to mono float32, and resampling."""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import soundfile
import soxr

from mozart_server.audio.wav import STREAMING_DATA_SIZES, parse_wav_header
from mozart_server.errors import InvalidArgumentError
from mozart_server.tensors import FloatArray

MIN_SAMPLE_RATE_HZ = 8_000
MAX_SAMPLE_RATE_HZ = 192_000


class Encoding(StrEnum):
    """How audio bytes are encoded."""

    PCM_S16LE = "s16le"
    PCM_F32LE = "f32le"
    WAV = "wav"
    FLAC = "flac"
    OGG = "ogg"


RAW_ENCODINGS = (Encoding.PCM_S16LE, Encoding.PCM_F32LE)
CONTAINER_FORMATS = {Encoding.WAV: "WAV", Encoding.FLAC: "FLAC", Encoding.OGG: "OGG"}
_SAMPLE_DTYPES: dict[Encoding, np.dtype[Any]] = {
    Encoding.PCM_S16LE: np.dtype("<i2"),
    Encoding.PCM_F32LE: np.dtype("<f4"),
}


@dataclass(frozen=True)
class AudioFormat:
    """The encoding of a request's audio; rate and channels matter for raw PCM only."""

    encoding: Encoding
    sample_rate_hz: int = 0
    channels: int = 0


@dataclass(frozen=True)
class DecodedAudio:
    """Mono float32 samples at their original rate."""

    samples: FloatArray
    sample_rate_hz: int

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate_hz


def check_raw_format(sample_rate_hz: int, channels: int) -> None:
    """Checks a sample rate and channel count against the API's limits.

    Raises:
        InvalidArgumentError: naming the bad value and the allowed range.
    """
    if not MIN_SAMPLE_RATE_HZ <= sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
        raise InvalidArgumentError(
            f"sample_rate_hz is {sample_rate_hz}; it must lie in "
            f"{MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ}"
        )
    if channels not in (1, 2):
        raise InvalidArgumentError(f"channels is {channels}; it must be 1 or 2")


def pcm_to_float(data: bytes, encoding: Encoding, channels: int) -> FloatArray:
    """Converts whole frames of raw little-endian PCM to mono float32 in [-1, 1]."""
    dtype = _SAMPLE_DTYPES[encoding]
    samples = np.frombuffer(data, dtype=dtype)
    if encoding is Encoding.PCM_S16LE:
        floats = samples.astype(np.float32) / np.float32(32768.0)
    else:
        floats = samples.astype(np.float32)
        if not np.all(np.isfinite(floats)):
            raise InvalidArgumentError("f32le audio contains NaN or infinite samples")
    return downmix(floats.reshape(-1, channels))


def downmix(frames: FloatArray) -> FloatArray:
    """Averages the channels of [frames, channels] audio to mono."""
    if frames.shape[1] == 1:
        return np.ascontiguousarray(frames[:, 0], dtype=np.float32)
    return np.asarray(frames.mean(axis=1, dtype=np.float32), dtype=np.float32)


def frame_bytes(encoding: Encoding, channels: int) -> int:
    """Bytes per frame (one sample of every channel) of raw PCM."""
    return int(_SAMPLE_DTYPES[encoding].itemsize) * channels


def decode_clip(data: bytes, audio_format: AudioFormat) -> DecodedAudio:
    """Decodes a whole clip to mono float32 at its own rate.

    Raises:
        InvalidArgumentError: empty, malformed or undecodable audio, or a rate or channel
            count outside the API's limits.
    """
    if not data:
        raise InvalidArgumentError("the audio is empty")
    if audio_format.encoding in RAW_ENCODINGS:
        check_raw_format(audio_format.sample_rate_hz, audio_format.channels)
        size = frame_bytes(audio_format.encoding, audio_format.channels)
        if len(data) % size:
            raise InvalidArgumentError(
                f"{len(data)} bytes of {audio_format.encoding.value} audio with "
                f"{audio_format.channels} channel(s) is not a whole number of {size}-byte frames"
            )
        samples = pcm_to_float(data, audio_format.encoding, audio_format.channels)
        return DecodedAudio(samples, audio_format.sample_rate_hz)
    container = CONTAINER_FORMATS[audio_format.encoding]
    if audio_format.encoding is Encoding.WAV:
        _check_wav_length(data)
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            if sound.format != container:
                raise InvalidArgumentError(
                    f"format.encoding says {container} but the audio is {sound.format}"
                )
            frames = sound.read(dtype="float32", always_2d=True)
            sample_rate_hz = sound.samplerate
    except (soundfile.SoundFileError, RuntimeError, ValueError, TypeError) as error:
        raise InvalidArgumentError(
            f"the audio cannot be decoded as {container}: {error}"
        ) from error
    check_raw_format(int(sample_rate_hz), int(frames.shape[1]))
    if frames.shape[0] == 0:
        raise InvalidArgumentError(f"the {container} audio holds no samples")
    if not np.all(np.isfinite(frames)):
        raise InvalidArgumentError(f"the {container} audio contains NaN or infinite samples")
    return DecodedAudio(downmix(frames), int(sample_rate_hz))


def _check_wav_length(data: bytes) -> None:
    header = parse_wav_header(data[:65536])
    if header is None:
        raise InvalidArgumentError("the WAV header is truncated")
    present = len(data) - header.data_offset
    declared = header.declared_data_bytes
    if declared not in STREAMING_DATA_SIZES and declared > present:
        raise InvalidArgumentError(
            f"the WAV header declares {declared} data bytes but only {present} follow it "
            "(truncated or lying header)"
        )


def resample(samples: FloatArray, from_hz: int, to_hz: int) -> FloatArray:
    """Resamples mono float32 audio with soxr (the same filter streams use)."""
    if from_hz == to_hz:
        return samples
    return np.asarray(soxr.resample(samples, from_hz, to_hz), dtype=np.float32)
