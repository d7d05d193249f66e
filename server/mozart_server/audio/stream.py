"""Per-stream audio state: incremental decoding, resampling and windowing (no gRPC here)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from mozart_server.audio.decode import (
    RAW_ENCODINGS,
    AudioFormat,
    Encoding,
    check_raw_format,
    frame_bytes,
    pcm_to_float,
)
from mozart_server.audio.wav import parse_wav_header
from mozart_server.audio.windowing import window_count
from mozart_server.errors import InvalidArgumentError
from mozart_server.settings import FloatSamples
from mozart_server.tensors import FloatArray

_STREAM_ENCODINGS = (*RAW_ENCODINGS, Encoding.WAV)


class StreamDecoder:
    """Turns a stream's audio bytes into mono float32 samples at the stream's own rate.

    Raw PCM keeps a partial frame for the next chunk; WAV waits for its header first.
    Float samples are checked as `float_samples` says (see `decode.checked_floats`).
    """

    def __init__(
        self, audio_format: AudioFormat, float_samples: FloatSamples = FloatSamples.REJECT
    ) -> None:
        """Checks the format.

        Raises:
            InvalidArgumentError: a container other than WAV, or AUTO (Classify only), or raw
                PCM with a bad rate or channel count.
        """
        if audio_format.encoding not in _STREAM_ENCODINGS:
            raise InvalidArgumentError(
                f"{audio_format.encoding.name} cannot be streamed; streams carry PCM_S16LE, "
                "PCM_F32LE or WAV (16-bit PCM or 32-bit float): send other files to "
                "Classify, or decode them and stream the PCM"
            )
        self._float_samples = float_samples
        self._encoding: Encoding | None = None
        self._channels = 0
        self.sample_rate_hz: int | None = None
        self._pending = b""
        self.input_samples = 0
        if audio_format.encoding in RAW_ENCODINGS:
            check_raw_format(audio_format.sample_rate_hz, audio_format.channels)
            self._set_format(
                audio_format.encoding, audio_format.channels, audio_format.sample_rate_hz
            )

    def _set_format(self, encoding: Encoding, channels: int, sample_rate_hz: int) -> None:
        self._encoding = encoding
        self._channels = channels
        self.sample_rate_hz = sample_rate_hz

    @property
    def input_duration_s(self) -> float:
        """Seconds of audio decoded so far."""
        return self.input_samples / self.sample_rate_hz if self.sample_rate_hz else 0.0

    def feed(self, data: bytes) -> FloatArray:
        """Decodes the next bytes; returns the whole frames they complete (maybe none).

        Raises:
            InvalidArgumentError: a malformed WAV header, or non-finite or out-of-range
                float samples.
        """
        self._pending += data
        if self._encoding is None:
            header = parse_wav_header(self._pending)
            if header is None:
                return np.zeros(0, dtype=np.float32)
            check_raw_format(header.sample_rate_hz, header.channels)
            # The header's data size is ignored: live recorders cannot know it up front.
            self._set_format(Encoding(header.sample_format), header.channels, header.sample_rate_hz)
            self._pending = self._pending[header.data_offset :]
        assert self._encoding is not None
        size = frame_bytes(self._encoding, self._channels)
        usable = len(self._pending) - len(self._pending) % size
        chunk, self._pending = self._pending[:usable], self._pending[usable:]
        samples = pcm_to_float(chunk, self._encoding, self._channels, self._float_samples)
        self.input_samples += len(samples)
        return samples

    def finish(self) -> None:
        """Checks that the stream ended on a whole frame.

        Raises:
            InvalidArgumentError: the header never completed, or a partial frame is left.
        """
        if self._encoding is None:
            raise InvalidArgumentError("the stream ended before its WAV header was complete")
        if self._pending:
            raise InvalidArgumentError(
                f"the stream ended with {len(self._pending)} bytes of a partial audio frame"
            )


@dataclass(frozen=True)
class Window:
    """One window cut from a stream, at the model's rate."""

    index: int
    start_sample: int
    samples: FloatArray


class StreamWindower:
    """Resamples a stream to the model rate (soxr keeps state across chunks) and emits a
    window per hop, exactly as `windowing.cut_windows` cuts a whole clip.

    Samples go into one preallocated buffer (written in place, no concatenation per
    chunk); when a chunk does not fit after its end, the samples the next window still
    needs (at most one window) move to its front, and the buffer grows only for a chunk
    larger than its spare room. Memory stays at a few windows plus the largest chunk.
    """

    def __init__(self, input_rate_hz: int, model_rate_hz: int, window_samples: int, hop: int):
        self._resampler = (
            soxr.ResampleStream(input_rate_hz, model_rate_hz, 1, dtype="float32")
            if input_rate_hz != model_rate_hz
            else None
        )
        self._window = window_samples
        self._hop = hop
        self._buffer = np.zeros(2 * window_samples + hop, dtype=np.float32)
        self._used = 0  # samples held, in self._buffer[: self._used]
        self._buffer_start = 0  # stream sample index of self._buffer[0]
        self._next_index = 0
        self.total_samples = 0

    def push(self, samples: FloatArray) -> list[Window]:
        """Adds input samples and returns the windows that are now complete."""
        return self._append(self._resample(samples, last=False))

    def finish(self) -> list[Window]:
        """Flushes the resampler; if no full window ever came, returns one zero-padded window."""
        windows = self._append(self._resample(np.zeros(0, dtype=np.float32), last=True))
        if self._next_index == 0 and window_count(self.total_samples, self._window, self._hop):
            padded = np.zeros(self._window, dtype=np.float32)
            padded[: self._used] = self._buffer[: self._used]
            windows.append(Window(0, 0, padded))
            self._next_index = 1
        return windows

    def _resample(self, samples: FloatArray, last: bool) -> FloatArray:
        if self._resampler is None:
            return samples
        return np.asarray(self._resampler.resample_chunk(samples, last=last), dtype=np.float32)

    def _append(self, new_samples: FloatArray) -> list[Window]:
        count = len(new_samples)
        if count:
            if self._used + count > len(self._buffer):
                self._make_room(count)
            self._buffer[self._used : self._used + count] = new_samples
            self._used += count
            self.total_samples += count
        windows = []
        while True:
            start = self._next_index * self._hop
            offset = start - self._buffer_start
            if offset + self._window > self._used:
                break
            windows.append(
                Window(self._next_index, start, self._buffer[offset : offset + self._window].copy())
            )
            self._next_index += 1
        return windows

    def _make_room(self, count: int) -> None:
        """Drops what no later window needs, moves the rest to the front, grows if need be."""
        keep_from = min(self._next_index * self._hop - self._buffer_start, self._used)
        kept = self._used - keep_from
        if kept + count > len(self._buffer):
            grown = np.zeros(kept + count + self._window + self._hop, dtype=np.float32)
            grown[:kept] = self._buffer[keep_from : self._used]
            self._buffer = grown
        elif kept:
            self._buffer[:kept] = self._buffer[keep_from : self._used]  # memmove: overlap is safe
        self._buffer_start += keep_from
        self._used = kept


class StreamAudio:
    """A stream's bytes in, model windows out; the windower is made once the rate is known."""

    def __init__(
        self,
        audio_format: AudioFormat,
        model_rate_hz: int,
        window_samples: int,
        hop: int,
        float_samples: FloatSamples = FloatSamples.REJECT,
    ) -> None:
        """Checks the stream's format (see StreamDecoder)."""
        self._decoder = StreamDecoder(audio_format, float_samples)
        self._model_rate_hz = model_rate_hz
        self._window_samples = window_samples
        self._hop = hop
        self._windower: StreamWindower | None = None

    @property
    def input_samples(self) -> int:
        """Samples decoded so far, at the stream's own rate."""
        return self._decoder.input_samples

    @property
    def input_duration_s(self) -> float:
        """Seconds of audio decoded so far."""
        return self._decoder.input_duration_s

    def push(self, data: bytes) -> list[Window]:
        """Decodes the next bytes and returns the windows they complete."""
        samples = self._decoder.feed(data)
        if self._windower is None:
            if self._decoder.sample_rate_hz is None:
                return []
            self._windower = StreamWindower(
                self._decoder.sample_rate_hz, self._model_rate_hz, self._window_samples, self._hop
            )
        return self._windower.push(samples)

    def finish(self) -> list[Window]:
        """Ends the stream: the last windows (see StreamWindower.finish).

        Raises:
            InvalidArgumentError: no audio at all, or a partial frame or header left over.
        """
        self._decoder.finish()
        if self._windower is None or self._decoder.input_samples == 0:
            raise InvalidArgumentError("the stream carried no audio")
        return self._windower.finish()
