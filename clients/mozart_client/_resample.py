"""Client-side resampling of a stream to the model's rate (`resample_on_client=True`).

The server would otherwise resample every stream itself, on its own CPU, for every
stream at once. This does the same work here, the same way:
downmix to mono by averaging the channels, then soxr's streaming resampler at its
default quality, so the windows the server cuts are the ones it would have made. The
audio leaves as mono 32-bit float PCM at the model's rate; soxr is the `resample`
extra (`pip install mozart-client[resample]`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from mozart_client.audio import AudioChunk, bytes_per_second, pcm_format
from mozart_client.errors import InvalidInputError
from mozart_proto.v1 import audio_classifier_pb2 as pb

Float32Array = npt.NDArray[np.float32]
_SAMPLE_TYPES: dict[int, np.dtype[Any]] = {
    pb.AUDIO_ENCODING_PCM_S16LE: np.dtype("<i2"),
    pb.AUDIO_ENCODING_PCM_F32LE: np.dtype("<f4"),
}


def _soxr() -> Any:
    try:
        import soxr  # noqa: PLC0415 - optional extra
    except ImportError:
        raise InvalidInputError(
            "resample_on_client=True needs soxr: install mozart-client[resample]"
        ) from None
    return soxr


def check_resamplable(fmt: pb.AudioFormat) -> None:
    """Refuses, before anything is sent, audio this module cannot resample (and soxr missing).

    Raises:
        InvalidInputError: the stream is WAV byte chunks (send raw PCM or a file
            instead), or soxr is not installed.
    """
    if fmt.encoding not in _SAMPLE_TYPES:
        raise InvalidInputError(
            "resample_on_client=True takes files, numpy arrays and raw PCM chunks "
            "(pcm_s16le, pcm_f32le), not WAV byte chunks"
        )
    _soxr()


class ChunkResampler:
    """Turns chunks of raw PCM at any rate into mono float32 chunks at the model's rate."""

    def __init__(self, fmt: pb.AudioFormat, model_rate_hz: int) -> None:
        check_resamplable(fmt)
        self._dtype = _SAMPLE_TYPES[fmt.encoding]
        self._channels = max(1, int(fmt.channels))
        self._frame_bytes = self._dtype.itemsize * self._channels
        self._pending = b""  # a partial frame carried to the next chunk
        self._resampler = _soxr().ResampleStream(
            int(fmt.sample_rate_hz), model_rate_hz, 1, dtype="float32"
        )
        self.format = pcm_format(pb.AUDIO_ENCODING_PCM_F32LE, model_rate_hz, 1)
        self._input_bytes_per_s = bytes_per_second(fmt)

    def _mono(self, data: bytes) -> Float32Array:
        data = self._pending + data
        whole = len(data) - len(data) % self._frame_bytes
        self._pending = data[whole:]
        samples = np.frombuffer(data[:whole], dtype=self._dtype).astype(np.float32)
        if self._dtype.kind == "i":
            samples /= np.float32(32768.0)
        frames = samples.reshape(-1, self._channels)
        if self._channels == 1:
            return np.ascontiguousarray(frames[:, 0])
        return np.asarray(frames.mean(axis=1, dtype=np.float32), dtype=np.float32)

    def convert(self, chunk: AudioChunk) -> AudioChunk:
        """One chunk resampled; its audio time stays the input's (for pacing and latency)."""
        out = self._resampler.resample_chunk(self._mono(chunk.data), last=False)
        duration_s = chunk.duration_s or len(chunk.data) / self._input_bytes_per_s
        return AudioChunk(np.asarray(out, dtype="<f4").tobytes(), duration_s)

    def flush(self) -> AudioChunk:
        """What soxr still holds at the end of the stream.

        Raises:
            InvalidInputError: the audio ended inside a frame.
        """
        if self._pending:
            raise InvalidInputError(
                f"the audio ended with {len(self._pending)} bytes of a partial frame"
            )
        empty = np.zeros(0, dtype=np.float32)
        out = self._resampler.resample_chunk(empty, last=True)
        return AudioChunk(np.asarray(out, dtype="<f4").tobytes(), 0.0)


def resampled(chunks: Iterator[AudioChunk], resampler: ChunkResampler) -> Iterator[AudioChunk]:
    """The chunks at the model's rate, then soxr's tail; empty pieces are skipped."""
    for chunk in chunks:
        out = resampler.convert(chunk)
        if out.data or out.duration_s:
            yield out
    tail = resampler.flush()
    if tail.data:
        yield tail


async def aresampled(
    chunks: AsyncIterator[AudioChunk], resampler: ChunkResampler
) -> AsyncIterator[AudioChunk]:
    """`resampled` for asynchronous chunks."""
    async for chunk in chunks:
        out = resampler.convert(chunk)
        if out.data or out.duration_s:
            yield out
    tail = resampler.flush()
    if tail.data:
        yield tail
