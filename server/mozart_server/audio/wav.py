"""A RIFF/WAVE header reader that works on a growing prefix, so streams can parse it bit by bit.

Streams only: Classify hands whole files to libsndfile (`decode.py`), which reads every
WAV sample format; a stream's WAV carries 16-bit PCM or 32-bit float.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mozart_server.errors import InvalidArgumentError

_PCM = 1
_IEEE_FLOAT = 3
_EXTENSIBLE = 0xFFFE
# Live recorders write 0 or 0xFFFFFFFF as the data size because they do not know it yet.
STREAMING_DATA_SIZES = (0, 0xFFFFFFFF)
# A header with its chunks larger than this is not a WAV header anyone sends us.
MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class WavHeader:
    """What the sample data after a WAV header looks like."""

    sample_format: str  # "s16le" or "f32le"
    channels: int
    sample_rate_hz: int
    data_offset: int
    declared_data_bytes: int


def parse_wav_header(prefix: bytes) -> WavHeader | None:
    """Parses the header at the start of `prefix`; None while more bytes are needed.

    Raises:
        InvalidArgumentError: the bytes are not a WAV header, or one Mozart cannot stream
            (only 16-bit integer and 32-bit float PCM are supported).
    """
    if len(prefix) < 12:
        if not (b"RIFF"[: len(prefix)] == prefix[:4]):
            raise InvalidArgumentError("audio is not WAV: it does not start with 'RIFF'")
        return None
    if prefix[:4] != b"RIFF" or prefix[8:12] != b"WAVE":
        raise InvalidArgumentError("audio is not WAV: it does not start with 'RIFF....WAVE'")
    offset = 12
    fmt: tuple[int, int, int, int] | None = None
    while True:
        if offset + 8 > len(prefix):
            _check_not_too_long(prefix)
            return None
        chunk_id = prefix[offset : offset + 4]
        (chunk_size,) = struct.unpack_from("<I", prefix, offset + 4)
        body = offset + 8
        if chunk_id == b"data":
            if fmt is None:
                raise InvalidArgumentError("WAV 'data' chunk comes before its 'fmt ' chunk")
            return _header(fmt, body, chunk_size)
        if body + chunk_size > len(prefix):
            _check_not_too_long(prefix)
            return None
        if chunk_id == b"fmt ":
            if chunk_size < 16:
                raise InvalidArgumentError(f"WAV 'fmt ' chunk is {chunk_size} bytes, expected 16+")
            tag, channels, rate = struct.unpack_from("<HHI", prefix, body)
            (bits,) = struct.unpack_from("<H", prefix, body + 14)
            if tag == _EXTENSIBLE and chunk_size >= 26:
                (tag,) = struct.unpack_from("<H", prefix, body + 24)  # sub-format GUID start
            fmt = (tag, channels, rate, bits)
        offset = body + chunk_size + (chunk_size & 1)  # chunks are word-aligned


def _check_not_too_long(prefix: bytes) -> None:
    if len(prefix) > MAX_HEADER_BYTES:
        raise InvalidArgumentError(f"WAV header is longer than {MAX_HEADER_BYTES} bytes")


def _header(fmt: tuple[int, int, int, int], data_offset: int, data_bytes: int) -> WavHeader:
    tag, channels, rate, bits = fmt
    if tag == _PCM and bits == 16:
        sample_format = "s16le"
    elif tag == _IEEE_FLOAT and bits == 32:
        sample_format = "f32le"
    else:
        raise InvalidArgumentError(
            f"WAV sample format {tag} with {bits} bits is not supported in streams; "
            "stream 16-bit PCM or 32-bit float WAV, or send the file to Classify, which "
            "takes any WAV"
        )
    return WavHeader(sample_format, channels, rate, data_offset, data_bytes)
