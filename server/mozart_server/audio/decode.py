"""Decoding whole clips (raw PCM, or any container of `mozart_proto.v1.audio_formats`, by
libsndfile) to mono float32 within the duration limit, and resampling."""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import soundfile
import soxr

from mozart_proto.v1.audio_formats import (
    CONTAINER_NAMES,
    CONTAINERS,
    AudioContainer,
    container_of,
)
from mozart_server.audio.wav import STREAMING_DATA_SIZES
from mozart_server.errors import InvalidArgumentError, OutOfRangeError
from mozart_server.settings import FloatSamples
from mozart_server.tensors import FloatArray

MIN_SAMPLE_RATE_HZ = 8_000
MAX_SAMPLE_RATE_HZ = 192_000
#: Float samples beyond this are not audio (18 dB above full scale): lossy decoders and
#: float masters go a little past +-1, but nothing real reaches +-8, and values near 1e19
#: overflow a model's float32 arithmetic into NaN scores.
MAX_FLOAT_SAMPLE_ABS = 8.0
#: Frames decoded at a time: a clip costs at most its limit plus one block, whatever its
#: header says (256 KiB of float32 per channel).
DECODE_BLOCK_FRAMES = 65_536
# libsndfile's frame count for a file whose length it cannot tell (SF_COUNT_MAX).
_UNKNOWN_LENGTH = 2**63 - 1
_UNRECOGNISED_FORMAT = 1  # libsndfile's SF_ERR_UNRECOGNISED_FORMAT


class Encoding(StrEnum):
    """How audio bytes are encoded: raw PCM, a container, or AUTO (detect the container)."""

    PCM_S16LE = "s16le"
    PCM_F32LE = "f32le"
    WAV = "wav"
    FLAC = "flac"
    OGG = "ogg"
    MP3 = "mp3"
    AIFF = "aiff"
    AUTO = "auto"


RAW_ENCODINGS = (Encoding.PCM_S16LE, Encoding.PCM_F32LE)
#: Each container's encoding and its entry in the shared list (a container added to the
#: list without an Encoding member fails here, at import).
CONTAINER_ENCODINGS: dict[Encoding, AudioContainer] = {Encoding(c.key): c for c in CONTAINERS}
_SAMPLE_DTYPES: dict[Encoding, np.dtype[Any]] = {
    Encoding.PCM_S16LE: np.dtype("<i2"),
    Encoding.PCM_F32LE: np.dtype("<f4"),
}
# libsndfile notes a data chunk that declares more bytes than follow it, e.g.
# "data : 320440 (should be 32000)" (WAV, WAVEX) or " SSND : 32008 (should be 21324)" (AIFF),
# and an RF64 whose ds64 chunk declares more frames than follow.
_DECLARED_BYTES = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_DECLARED_FRAMES = re.compile(
    r"Calculated frame count (\d+) does not match value from 'ds64' chunk of (\d+)"
)
_S16_SCALE = np.float32(1.0 / 32768.0)
_OBJECT_ADDRESS = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>")


@dataclass(frozen=True)
class AudioFormat:
    """The encoding of a request's audio; rate and channels matter for raw PCM only."""

    encoding: Encoding
    sample_rate_hz: int = 0
    channels: int = 0


@dataclass(frozen=True)
class DecodeLimits:
    """What decoding one clip may produce."""

    max_duration_s: float
    """Longest clip, in seconds of audio (the server's max_stream_duration_s)."""
    float_samples: FloatSamples = FloatSamples.REJECT
    """Whether float samples beyond +-MAX_FLOAT_SAMPLE_ABS are refused or all clipped."""


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


def checked_floats(samples: FloatArray, float_samples: FloatSamples, what: str) -> FloatArray:
    """Refuses NaN and infinity; refuses samples beyond +-MAX_FLOAT_SAMPLE_ABS, or clips
    every sample to [-1, 1], as `float_samples` says.

    Args:
        samples: float32 samples, any shape; clipped in place when writable.
        float_samples: the server's float_samples setting.
        what: the audio, for messages ("f32le audio", "the WAV audio").

    Raises:
        InvalidArgumentError: a non-finite sample, or one out of range under `reject`.
    """
    if not samples.size:
        return samples
    low, high = float(samples.min()), float(samples.max())  # NaN anywhere makes both NaN
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InvalidArgumentError(f"{what} contains NaN or infinite samples")
    if float_samples is FloatSamples.CLIP:
        if low < -1.0 or high > 1.0:
            out = samples if samples.flags.writeable else None
            return np.clip(samples, -1.0, 1.0, out=out)
        return samples
    peak = high if high >= -low else low
    if abs(peak) > MAX_FLOAT_SAMPLE_ABS:
        raise InvalidArgumentError(
            f"{what} holds a sample of {peak:.3g}; float samples must lie within "
            f"+-{MAX_FLOAT_SAMPLE_ABS:g} (full scale is +-1; the server's float_samples "
            "setting is reject)"
        )
    return samples


def pcm_to_float(
    data: bytes,
    encoding: Encoding,
    channels: int,
    float_samples: FloatSamples = FloatSamples.REJECT,
) -> FloatArray:
    """Converts whole frames of raw little-endian PCM to mono float32.

    Raises:
        InvalidArgumentError: f32le samples that are not finite, or out of range (see
            `checked_floats`).
    """
    samples = np.frombuffer(data, dtype=_SAMPLE_DTYPES[encoding])  # a view: no copy
    if encoding is Encoding.PCM_S16LE:
        # One pass from int16 to float32 (scaling by 2**-15 is exact, as dividing was).
        floats: FloatArray = np.multiply(samples, _S16_SCALE, dtype=np.float32)
    else:
        floats = checked_floats(samples.astype(np.float32), float_samples, "f32le audio")
    if channels == 1:
        return floats  # already mono, contiguous and writable: nothing to mix
    return downmix(floats.reshape(-1, channels))


def downmix(frames: FloatArray) -> FloatArray:
    """Averages the channels of [frames, channels] audio to mono."""
    if frames.shape[1] == 1:
        return np.ascontiguousarray(frames[:, 0], dtype=np.float32)
    return np.asarray(frames.mean(axis=1, dtype=np.float32), dtype=np.float32)


def frame_bytes(encoding: Encoding, channels: int) -> int:
    """Bytes per frame (one sample of every channel) of raw PCM."""
    return int(_SAMPLE_DTYPES[encoding].itemsize) * channels


def decode_clip(data: bytes, audio_format: AudioFormat, limits: DecodeLimits) -> DecodedAudio:
    """Decodes a whole clip to mono float32 at its own rate, never past the duration limit.

    A container's header is read first: a clip it says is too long is refused before any
    decoding. Then the audio is decoded a block at a time, and decoding stops as soon as
    it passes the limit (headers can lie or leave the length out), so a clip costs at most
    its limit in memory, whatever its file holds.

    Raises:
        InvalidArgumentError: empty, malformed, truncated or undecodable audio; a container
            other than the one declared; a rate or channel count outside the API's limits;
            non-finite or out-of-range float samples.
        OutOfRangeError: a clip longer than `limits.max_duration_s`.
    """
    if not data:
        raise InvalidArgumentError("the audio is empty")
    if audio_format.encoding not in RAW_ENCODINGS:
        return _decode_container(data, audio_format.encoding, limits)
    rate, channels = audio_format.sample_rate_hz, audio_format.channels
    check_raw_format(rate, channels)
    size = frame_bytes(audio_format.encoding, channels)
    if len(data) % size:
        raise InvalidArgumentError(
            f"{len(data)} bytes of {audio_format.encoding.value} audio with "
            f"{channels} channel(s) is not a whole number of {size}-byte frames"
        )
    check_duration(len(data) // size, rate, limits.max_duration_s, "")
    samples = pcm_to_float(data, audio_format.encoding, channels, limits.float_samples)
    return DecodedAudio(samples, rate)


def _decode_container(data: bytes, encoding: Encoding, limits: DecodeLimits) -> DecodedAudio:
    declared = CONTAINER_ENCODINGS.get(encoding)  # None: AUTO, detect it
    name = declared.name if declared is not None else ""
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            container = _container(sound, declared)
            name = container.name
            rate, channels = int(sound.samplerate), int(sound.channels)
            check_raw_format(rate, channels)
            if sound.frames != _UNKNOWN_LENGTH:
                check_duration(int(sound.frames), rate, limits.max_duration_s, "its header says ")
            _check_not_truncated(sound.extra_info, container)
            samples = _read_mono(sound, rate, container, limits)
    except (soundfile.SoundFileError, RuntimeError, ValueError, TypeError) as error:
        raise InvalidArgumentError(_decode_failure(name, error)) from error
    return DecodedAudio(samples, rate)


def _container(sound: soundfile.SoundFile, declared: AudioContainer | None) -> AudioContainer:
    found = container_of(str(sound.format))
    if declared is None and found is None:
        raise InvalidArgumentError(
            f"the audio is {sound.format_info}, which Classify does not take; it takes "
            f"{CONTAINER_NAMES}"
        )
    if declared is not None and found is not declared:
        actual = found.name if found is not None else sound.format_info
        raise InvalidArgumentError(
            f"format.encoding says {declared.name} but the audio is {actual}"
        )
    assert found is not None
    return found


def check_duration(frames: int, rate: int, limit_s: float, source: str) -> None:
    """Refuses `frames` at `rate` when they last longer than `limit_s`.

    Raises:
        OutOfRangeError: naming the duration, where it was read (`source`) and the limit.
    """
    if frames > _limit_frames(rate, limit_s):
        raise OutOfRangeError(
            f"{source}the clip lasts {frames / rate:.1f} s, longer than the server's "
            f"max_stream_duration_s of {limit_s} s"
        )


def _limit_frames(rate: int, limit_s: float) -> int:
    return math.floor(limit_s * rate)


def _check_not_truncated(log: str, container: AudioContainer) -> None:
    """Refuses a file whose header declares more audio than follows it (libsndfile reads
    what is there, so the clip would be classified short without a word)."""
    if (found := _DECLARED_BYTES.search(log)) is not None:
        declared, present = int(found[1]), int(found[2])
        if declared > present and declared not in STREAMING_DATA_SIZES:
            raise InvalidArgumentError(
                f"the {container.name} header declares {declared} data bytes but only "
                f"{present} follow it (truncated or lying header)"
            )
    if (found := _DECLARED_FRAMES.search(log)) is not None:
        present, declared = int(found[1]), int(found[2])
        if declared > present:
            raise InvalidArgumentError(
                f"the {container.name} header declares {declared} frames but only {present} "
                "follow it (truncated or lying header)"
            )


def _read_mono(
    sound: soundfile.SoundFile, rate: int, container: AudioContainer, limits: DecodeLimits
) -> FloatArray:
    """Decodes block by block into one mono array (sized from the header when it gives a
    length within the limit, so the samples are held once); stops past the limit."""
    limit = _limit_frames(rate, limits.max_duration_s)
    what = f"the {container.name} audio"
    known = sound.frames if sound.frames != _UNKNOWN_LENGTH else 0
    mono = np.empty(min(known, limit), dtype=np.float32)
    extra: list[FloatArray] = []  # what a header that gave no (or a short) length left out
    decoded = 0
    while True:
        block = sound.read(frames=DECODE_BLOCK_FRAMES, dtype="float32", always_2d=True)
        if not len(block):
            break
        if decoded + len(block) > limit:
            raise OutOfRangeError(
                f"the clip lasts more than {limits.max_duration_s} s (decoding stopped there), "
                f"longer than the server's max_stream_duration_s of {limits.max_duration_s} s"
            )
        samples = downmix(checked_floats(block, limits.float_samples, what))
        fits = max(0, min(len(samples), len(mono) - decoded))
        mono[decoded : decoded + fits] = samples[:fits]
        if fits < len(samples):
            extra.append(samples[fits:])
        decoded += len(samples)
    if not decoded:
        raise InvalidArgumentError(f"{what} holds no samples")
    if extra:
        return np.concatenate([mono, *extra])
    return mono[:decoded]


def _decode_failure(name: str, error: Exception) -> str:
    """libsndfile's reason in plain words, without the Python object it was reading."""
    as_what = f" as {name}" if name else ""
    if isinstance(error, soundfile.LibsndfileError):
        if error.code == _UNRECOGNISED_FORMAT:
            what = f"{name}, nor any other" if name else "any"
            return (
                f"the audio cannot be decoded{as_what}: it is not {what} format the server "
                f"recognises (Classify takes {CONTAINER_NAMES})"
            )
        reason = error.error_string
    else:
        reason = str(error)
    reason = _OBJECT_ADDRESS.sub("the audio", reason).strip()
    reason = reason.removeprefix("Error : ").rstrip(".") or type(error).__name__
    return f"the audio cannot be decoded{as_what}: {reason}"


def resample(samples: FloatArray, from_hz: int, to_hz: int) -> FloatArray:
    """Resamples mono float32 audio with soxr (the same filter streams use)."""
    if from_hz == to_hz:
        return samples
    return np.asarray(soxr.resample(samples, from_hz, to_hz), dtype=np.float32)
