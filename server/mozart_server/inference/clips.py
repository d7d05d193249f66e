"""Whole clips and ready-made tensors: resolve a version, decode, window, batch, score."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass

from mozart_server.audio.decode import (
    RAW_ENCODINGS,
    AudioFormat,
    DecodedAudio,
    decode_clip,
    resample,
)
from mozart_server.audio.windowing import cut_windows, hop_samples
from mozart_server.engines import EngineOutputs
from mozart_server.errors import OutOfRangeError
from mozart_server.inference.options import window_options
from mozart_server.inference.results import ClipResult, WindowScores, summarize
from mozart_server.models.registry import ModelRegistry, ServingVersion
from mozart_server.observability.context import note_model
from mozart_server.observability.metrics import ServerMetrics
from mozart_server.settings import StreamSettings
from mozart_server.tensors import FloatArray

#: Raw PCM up to this size at the model's rate converts on the event loop: it is one
#: numpy conversion of tens of microseconds, cheaper than the trip to a worker thread
#: (about 0.1-0.5 ms on a busy 2-core machine). 256 KiB is 8 s of 16-bit mono at 16 kHz.
INLINE_DECODE_MAX_BYTES = 256 * 1024


@dataclass(frozen=True)
class ClipRequest:
    """A clip to classify, as every API hands it over."""

    model_name: str
    model_version: str
    audio: bytes
    audio_format: AudioFormat
    hop_ms: int = 0
    top_k: int = 0


def _cheap_to_decode(data: bytes, audio_format: AudioFormat, model_rate_hz: int) -> bool:
    """Whether a clip needs no container decoding and no resampling, and is small."""
    return (
        audio_format.encoding in RAW_ENCODINGS
        and audio_format.sample_rate_hz == model_rate_hz
        and len(data) <= INLINE_DECODE_MAX_BYTES
    )


class ClipClassifier:
    """Classifies whole clips and runs ready-made windows, on a leased model version."""

    def __init__(
        self, registry: ModelRegistry, settings: StreamSettings, metrics: ServerMetrics
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._metrics = metrics

    async def classify(self, request: ClipRequest, deadline: float | None) -> ClipResult:
        """Per-window scores of a clip and their mean.

        Args:
            request: the clip and how to window it.
            deadline: `time.monotonic()` after which the answer is no longer wanted.

        Raises:
            MozartError: a subclass naming what was wrong (see the proto's error contract).
        """
        with self._registry.lease(request.model_name, request.model_version) as model:
            note_model(model.name, model.version)
            manifest = model.manifest
            options = window_options(
                manifest, request.hop_ms, request.top_k, 0.0, self._settings.default_top_k
            )
            decode = functools.partial(
                self._decode_to_model_rate,
                request.audio,
                request.audio_format,
                manifest.sample_rate_hz,
            )
            # Decoding and resampling a long clip takes milliseconds: keep both off the event
            # loop, in one trip to a worker thread; small raw PCM is cheaper to convert here.
            cheap = _cheap_to_decode(request.audio, request.audio_format, manifest.sample_rate_hz)
            decoded, samples = decode() if cheap else await asyncio.to_thread(decode)
            self._metrics.audio_processed.labels(method="Classify").inc(decoded.duration_s)
            hop = hop_samples(options.hop_ms, manifest.sample_rate_hz)
            windows = cut_windows(samples, manifest.window_samples, hop)
            result = await model.batcher.submit(windows, deadline)
        scores = result.outputs.probabilities
        window_scores = tuple(
            WindowScores(
                index=index,
                start_sample=index * hop,
                scores=scores[index],
                smoothed=scores[index],
                queue_time_s=result.queue_time_s,
                compute_time_s=result.compute_time_s,
            )
            for index in range(len(scores))
        )
        summary = summarize(manifest, list(scores), decoded.duration_s)
        return ClipResult(manifest, options.top_k, window_scores, summary)

    def _decode_to_model_rate(
        self, data: bytes, audio_format: AudioFormat, model_rate_hz: int
    ) -> tuple[DecodedAudio, FloatArray]:
        decoded = decode_clip(data, audio_format)
        limit_s = self._settings.max_stream_duration_s
        if decoded.duration_s > limit_s:
            raise OutOfRangeError(
                f"the clip lasts {decoded.duration_s:.1f} s, longer than the server's "
                f"max_stream_duration_s of {limit_s} s"
            )
        return decoded, resample(decoded.samples, decoded.sample_rate_hz, model_rate_hz)

    async def infer(
        self,
        model_name: str,
        model_version: str,
        read_windows: Callable[[ServingVersion], FloatArray],
        deadline: float | None,
    ) -> tuple[ServingVersion, EngineOutputs]:
        """Runs windows that the caller reads from its request once the version is known.

        Raises:
            MozartError: from `read_windows`, the registry or the batcher.
        """
        with self._registry.lease(model_name, model_version) as model:
            note_model(model.name, model.version)
            waveforms = read_windows(model)
            result = await model.batcher.submit(waveforms, deadline)
        return model, result.outputs
