"""Turns the SDK's audio inputs (paths, bytes, numpy arrays, chunk iterators) into wire audio.

Classify sends containers (WAV, FLAC, Ogg, MP3, AIFF: `mozart_proto.v1.audio_formats`)
as they are, since the server decodes them. Which container a file is, libsndfile
says (through `soundfile`, the `audio-files` extra); without it the SDK sends
AUDIO_ENCODING_AUTO and the server's libsndfile tells. Streams carry raw PCM, so
files are decoded here: 16-bit WAV through the standard library, any other format
through `soundfile`.
"""

from __future__ import annotations

import io
import os
import re
import wave
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from mozart_client.errors import InvalidInputError
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1.audio_formats import CONTAINER_NAMES, CONTAINERS, container_of

AudioArray = npt.NDArray[Any]
AudioInput = str | os.PathLike[str] | bytes | AudioArray
"""What `classify()` accepts: a file path, encoded bytes, or samples."""


def _wire_encoding(wire_name: str) -> pb.AudioEncoding:
    return cast(pb.AudioEncoding, pb.AudioEncoding.Value(f"AUDIO_ENCODING_{wire_name}"))


#: Every encoding by its SDK name: raw PCM, each container of the shared list, and auto.
ENCODINGS: dict[str, pb.AudioEncoding] = {
    "pcm_s16le": pb.AUDIO_ENCODING_PCM_S16LE,
    "pcm_f32le": pb.AUDIO_ENCODING_PCM_F32LE,
    **{c.key: _wire_encoding(c.wire_name) for c in CONTAINERS},
    "auto": pb.AUDIO_ENCODING_AUTO,
}
_BYTES_PER_SAMPLE = {pb.AUDIO_ENCODING_PCM_S16LE: 2, pb.AUDIO_ENCODING_PCM_F32LE: 4}


@dataclass(frozen=True)
class WireAudio:
    """Audio ready for a ClassifyRequest."""

    format: pb.AudioFormat
    data: bytes


@dataclass(frozen=True)
class AudioChunk:
    """One piece of a stream, with the audio time it holds (0 when unknown)."""

    data: bytes
    duration_s: float


@dataclass(frozen=True)
class StreamAudio:
    """A stream's wire format and its chunks, in order."""

    format: pb.AudioFormat
    chunks: Iterator[AudioChunk]


def encoding_from_name(name: str) -> pb.AudioEncoding:
    """Looks up an encoding by its SDK name (`wav`, `mp3`, `pcm_s16le`, `auto`, ...)."""
    try:
        return ENCODINGS[name.lower()]
    except KeyError:
        known = ", ".join(ENCODINGS)
        raise InvalidInputError(f"unknown encoding {name!r}; use one of {known}") from None


def detect_container(data: bytes) -> pb.AudioEncoding:
    """The container of encoded audio as libsndfile reads its header (nothing is decoded).

    Without `soundfile` installed, AUDIO_ENCODING_AUTO: the server's libsndfile tells.

    Raises:
        InvalidInputError: libsndfile does not recognise the bytes, or they are a format
            Classify does not take.
    """
    try:
        import soundfile  # noqa: PLC0415 - optional extra
    except ImportError:
        return pb.AUDIO_ENCODING_AUTO
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            libsndfile_format, description = str(sound.format), str(sound.format_info)
    except (soundfile.SoundFileError, RuntimeError, ValueError, TypeError):
        raise InvalidInputError(
            f"cannot tell the audio encoding: libsndfile reads it as none of {CONTAINER_NAMES}; "
            "for raw PCM pass encoding= and sample_rate_hz="
        ) from None
    container = container_of(libsndfile_format)
    if container is None:
        raise InvalidInputError(
            f"the audio is {description}, which Classify does not take; it takes "
            f"{CONTAINER_NAMES}, or raw PCM with encoding= and sample_rate_hz="
        )
    return ENCODINGS[container.key]


def _read_file(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise InvalidInputError(f"cannot read {os.fspath(path)}: {error.strerror}") from error


def pcm_format(
    encoding: pb.AudioEncoding, sample_rate_hz: int | None, channels: int = 1
) -> pb.AudioFormat:
    """Builds the AudioFormat of raw PCM (or a container, whose header rules)."""
    if encoding in _BYTES_PER_SAMPLE and not sample_rate_hz:
        raise InvalidInputError("raw PCM needs sample_rate_hz")
    return pb.AudioFormat(encoding=encoding, sample_rate_hz=sample_rate_hz or 0, channels=channels)


def bytes_per_second(fmt: pb.AudioFormat) -> int:
    """Bytes per second of raw PCM in this format; 0 for containers (unknown)."""
    width = _BYTES_PER_SAMPLE.get(fmt.encoding, 0)
    return width * max(1, fmt.channels) * fmt.sample_rate_hz


def array_to_pcm(samples: AudioArray) -> tuple[pb.AudioEncoding, int, bytes]:
    """Encodes samples as little-endian PCM.

    Args:
        samples: Shape (frames,) or (frames, channels); int16 stays 16-bit,
            any float becomes 32-bit float in [-1, 1].

    Returns:
        The encoding, the channel count and the interleaved bytes.
    """
    array = np.asarray(samples)
    if array.ndim not in (1, 2):
        raise InvalidInputError(
            f"audio must have shape (frames,) or (frames, channels), got {array.shape}"
        )
    channels = 1 if array.ndim == 1 else int(array.shape[1])
    if array.dtype == np.int16:
        return pb.AUDIO_ENCODING_PCM_S16LE, channels, array.astype("<i2").tobytes()
    if np.issubdtype(array.dtype, np.floating):
        return pb.AUDIO_ENCODING_PCM_F32LE, channels, array.astype("<f4").tobytes()
    raise InvalidInputError(f"audio samples must be int16 or float, got {array.dtype}")


def check_channels(channels: int | None) -> None:
    """Refuses a channel count that is not a positive whole number."""
    if channels is not None and (not isinstance(channels, int) or channels < 1):
        raise InvalidInputError(f"channels must be a positive integer, got {channels!r}")


def _array_channels(samples: AudioArray, channels: int | None) -> None:
    # An array's shape says its channels; a different `channels` is a mistake, not a hint.
    found = 1 if np.ndim(samples) == 1 else int(np.shape(samples)[1])
    if channels is not None and np.ndim(samples) in (1, 2) and channels != found:
        raise InvalidInputError(
            f"channels={channels}, but the array has {found} (shape (frames, channels))"
        )


def clip_audio(
    audio: AudioInput,
    *,
    sample_rate_hz: int | None = None,
    encoding: str | None = None,
    channels: int | None = None,
) -> WireAudio:
    """Prepares a whole clip for Classify.

    Args:
        audio: A file path, encoded bytes, or a numpy array of samples.
        sample_rate_hz: Needed for numpy arrays and raw PCM bytes.
        encoding: Needed for raw PCM bytes (`pcm_s16le`, `pcm_f32le`); containers
            are recognised by libsndfile (see `detect_container`).
        channels: Channels of raw PCM bytes (interleaved), 1 when not given;
            containers carry their own, and arrays have theirs in their shape.

    Returns:
        The format and bytes to send.
    """
    check_channels(channels)
    if isinstance(audio, np.ndarray):
        if not sample_rate_hz:
            raise InvalidInputError("a numpy array needs sample_rate_hz")
        _array_channels(audio, channels)
        pcm_encoding, array_channels, data = array_to_pcm(audio)
        return WireAudio(pcm_format(pcm_encoding, sample_rate_hz, array_channels), data)
    data = audio if isinstance(audio, bytes) else _read_file(audio)
    chosen = encoding_from_name(encoding) if encoding is not None else detect_container(data)
    return WireAudio(pcm_format(chosen, sample_rate_hz, channels or 1), data)


def _frames_per_chunk(sample_rate_hz: int, chunk_ms: int) -> int:
    if chunk_ms <= 0:
        raise InvalidInputError(f"chunk_ms must be positive, got {chunk_ms}")
    return max(1, sample_rate_hz * chunk_ms // 1000)


def _array_chunks(samples: AudioArray, sample_rate_hz: int, chunk_ms: int) -> Iterator[AudioChunk]:
    frames = _frames_per_chunk(sample_rate_hz, chunk_ms)
    for start in range(0, len(samples), frames):
        piece = samples[start : start + frames]
        yield AudioChunk(array_to_pcm(piece)[2], len(piece) / sample_rate_hz)


def _wav_chunks(reader: wave.Wave_read, chunk_ms: int) -> Iterator[AudioChunk]:
    rate = reader.getframerate()
    frames = _frames_per_chunk(rate, chunk_ms)
    with reader:
        while data := reader.readframes(frames):
            yield AudioChunk(data, len(data) / (2 * reader.getnchannels() * rate))


def _soundfile_chunks(path: str, chunk_ms: int) -> StreamAudio:
    import soundfile  # noqa: PLC0415 - optional extra, imported only for non-WAV files

    try:
        info = soundfile.info(path)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        reason = error.error_string if isinstance(error, soundfile.LibsndfileError) else error
        raise InvalidInputError(f"cannot decode {path}: {_clean(str(reason))}") from error
    rate = int(info.samplerate)
    frames = _frames_per_chunk(rate, chunk_ms)

    def chunks() -> Iterator[AudioChunk]:
        for block in soundfile.blocks(path, blocksize=frames, dtype="float32", always_2d=True):
            yield AudioChunk(block.astype("<f4").tobytes(), len(block) / rate)

    fmt = pcm_format(pb.AUDIO_ENCODING_PCM_F32LE, rate, int(info.channels))
    return StreamAudio(fmt, chunks())


def _file_stream(path: str | os.PathLike[str], chunk_ms: int) -> StreamAudio:
    name = os.fspath(path)
    try:
        reader = wave.open(name, "rb")  # noqa: SIM115 - closed by _wav_chunks
    except OSError as error:
        raise InvalidInputError(f"cannot read {name}: {error.strerror}") from error
    except (wave.Error, EOFError) as error:
        # Not a WAV the standard library reads (not RIFF, or float, 24-bit, WAVEX, ...).
        reader = None
        wav_problem = str(error)
    if reader is not None and reader.getsampwidth() == 2:
        fmt = pcm_format(pb.AUDIO_ENCODING_PCM_S16LE, reader.getframerate(), reader.getnchannels())
        return StreamAudio(fmt, _wav_chunks(reader, chunk_ms))
    if reader is not None:
        wav_problem = f"{reader.getsampwidth() * 8}-bit samples"
        reader.close()
    try:
        return _soundfile_chunks(name, chunk_ms)
    except ImportError:
        raise InvalidInputError(
            f"cannot stream {name} ({wav_problem}) without soundfile: "
            "install mozart-client[audio-files], or convert it to 16-bit WAV"
        ) from None


def _clean(message: str) -> str:
    """A libsndfile message without the Python object it was reading."""
    return re.sub(r"<[^<>]*\bat 0x[0-9a-fA-F]+>", "the audio", message).strip()


def _iterable_stream(
    items: Iterable[bytes | AudioArray],
    *,
    sample_rate_hz: int | None,
    encoding: str | None,
    channels: int,
) -> StreamAudio:
    iterator = iter(items)
    first = next(iterator, None)
    if first is None:
        raise InvalidInputError("the audio iterator yielded nothing")
    fmt = format_of_first_chunk(
        first, sample_rate_hz=sample_rate_hz, encoding=encoding, channels=channels
    )
    rate = bytes_per_second(fmt)
    chunks = (chunk_of(item, rate) for item in _chain_first(first, iterator))
    return StreamAudio(fmt, chunks)


def format_of_first_chunk(
    first: bytes | AudioArray, *, sample_rate_hz: int | None, encoding: str | None, channels: int
) -> pb.AudioFormat:
    """The stream format of chunks given as an iterator: numpy chunks carry their own
    encoding and channels; byte chunks need `encoding` (and `sample_rate_hz` for raw PCM)."""
    if isinstance(first, np.ndarray):
        if not sample_rate_hz:
            raise InvalidInputError("numpy chunks need sample_rate_hz")
        pcm_encoding, array_channels, _ = array_to_pcm(first[:0])
        return pcm_format(pcm_encoding, sample_rate_hz, array_channels)
    if encoding is None:
        raise InvalidInputError("byte chunks need encoding= (pcm_s16le, pcm_f32le or wav)")
    return pcm_format(encoding_from_name(encoding), sample_rate_hz, channels)


def chunk_of(item: bytes | AudioArray, bytes_per_s: float) -> AudioChunk:
    """One iterator item as wire bytes, with its duration (0 when the rate is unknown)."""
    data = array_to_pcm(item)[2] if isinstance(item, np.ndarray) else bytes(item)
    return AudioChunk(data, len(data) / bytes_per_s if bytes_per_s else 0.0)


def _chain_first(
    first: bytes | AudioArray, rest: Iterator[bytes | AudioArray]
) -> Iterator[bytes | AudioArray]:
    yield first
    yield from rest


StreamInput = str | os.PathLike[str] | AudioArray | Iterable[bytes] | Iterable[AudioArray]
"""What `stream()` accepts: a file path, a numpy array, or an iterable of chunks."""


def stream_audio(
    source: StreamInput,
    *,
    sample_rate_hz: int | None = None,
    encoding: str | None = None,
    channels: int | None = None,
    chunk_ms: int = 100,
) -> StreamAudio:
    """Prepares a stream source: its wire format and its chunks.

    Args:
        source: A file path (decoded here), a numpy array (split into chunks of
            `chunk_ms`), or an iterable of byte or numpy chunks (sent as given).
        sample_rate_hz: Needed for numpy input and raw PCM byte chunks.
        encoding: Needed for byte chunks: `pcm_s16le`, `pcm_f32le` or `wav`.
        channels: Channels of raw PCM byte chunks (1 when not given); arrays have
            theirs in their shape, and a `channels` that contradicts it raises.
        chunk_ms: Audio per message for files and arrays.

    Returns:
        The format for the StreamConfig and the chunks to send after it.
    """
    if isinstance(source, str | os.PathLike):
        return _file_stream(source, chunk_ms)
    check_channels(channels)
    if isinstance(source, np.ndarray):
        if not sample_rate_hz:
            raise InvalidInputError("a numpy array needs sample_rate_hz")
        _array_channels(source, channels)
        pcm_encoding, array_channels, _ = array_to_pcm(source[:0])
        fmt = pcm_format(pcm_encoding, sample_rate_hz, array_channels)
        return StreamAudio(fmt, _array_chunks(source, sample_rate_hz, chunk_ms))
    if isinstance(source, bytes):
        raise InvalidInputError("stream() takes an iterable of byte chunks, not one bytes object")
    return _iterable_stream(
        source, sample_rate_hz=sample_rate_hz, encoding=encoding, channels=channels or 1
    )
