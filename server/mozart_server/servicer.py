"""mozart.v1.AudioClassifier: Classify, StreamClassify, ListModels, GetModel."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from mozart_server import conversion
from mozart_server.audio import RAW_ENCODINGS, AudioFormat, DecodedAudio, decode_clip, resample
from mozart_server.engine import FloatArray
from mozart_server.errors import OutOfRangeError
from mozart_server.health import ServingState
from mozart_server.interceptors import current_request_id, note_model
from mozart_server.metrics import ServerMetrics
from mozart_server.registry import ModelRegistry
from mozart_server.settings import ServerSettings
from mozart_server.stream_handler import StreamHandler
from mozart_server.windowing import cut_windows, hop_samples

if TYPE_CHECKING:
    from mozart_server.interceptors import Context

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AudioClassifier"].full_name


def deadline_of(context: Context) -> float | None:
    """The call's deadline on the monotonic clock, or None."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


#: Raw PCM up to this size at the model's rate converts on the event loop: it is one
#: numpy conversion of tens of microseconds, cheaper than the trip to a worker thread
#: (about 0.1-0.5 ms on a busy 2-core machine). 256 KiB is 8 s of 16-bit mono at 16 kHz.
INLINE_DECODE_MAX_BYTES = 256 * 1024


def _cheap_to_decode(data: bytes, audio_format: AudioFormat, model_rate_hz: int) -> bool:
    """Whether a clip needs no container decoding and no resampling, and is small."""
    return (
        audio_format.encoding in RAW_ENCODINGS
        and audio_format.sample_rate_hz == model_rate_hz
        and len(data) <= INLINE_DECODE_MAX_BYTES
    )


class AudioClassifierServicer(pb_grpc.AudioClassifierServicer):
    """The native API on top of the model registry and its batchers."""

    def __init__(
        self,
        registry: ModelRegistry,
        settings: ServerSettings,
        metrics: ServerMetrics,
        state: ServingState,
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._metrics = metrics
        self._state = state

    async def Classify(  # noqa: N802 (gRPC's method name)
        self, request: pb.ClassifyRequest, context: Context
    ) -> pb.ClassifyResponse:
        """Classifies a whole clip: per-window results and the mean as summary."""
        model = self._registry.resolve(request.model.name, request.model.version)
        note_model(model.name, model.version)
        manifest = model.manifest
        audio_format = conversion.audio_format(request.format)
        options = conversion.window_options(
            manifest, request.hop_ms, request.top_k, 0.0, self._settings.default_top_k
        )
        decode = functools.partial(
            self._decode_to_model_rate, request.audio, audio_format, manifest.sample_rate_hz
        )
        # Decoding and resampling a long clip takes milliseconds: keep both off the event
        # loop, in one trip to a worker thread; small raw PCM is cheaper to convert here.
        cheap = _cheap_to_decode(request.audio, audio_format, manifest.sample_rate_hz)
        decoded, samples = decode() if cheap else await asyncio.to_thread(decode)
        self._metrics.audio_processed.labels(method="Classify").inc(decoded.duration_s)
        hop = hop_samples(options.hop_ms, manifest.sample_rate_hz)
        windows = cut_windows(samples, manifest.window_samples, hop)
        result = await model.batcher.submit(windows, deadline_of(context))
        scores = result.outputs.probabilities
        window_results = [
            conversion.window_result(
                model,
                index=index,
                start_sample=index * hop,
                scores=scores[index],
                smoothed=scores[index],
                top_k=options.top_k,
                queue_time_s=result.queue_time_s,
                compute_time_s=result.compute_time_s,
            )
            for index in range(len(scores))
        ]
        return pb.ClassifyResponse(
            model_name=model.name,
            model_version=model.version,
            labels=list(manifest.labels),
            windows=window_results,
            summary=conversion.summary(manifest, list(scores), options.top_k, decoded.duration_s),
            request_id=current_request_id(),
        )

    def _decode_to_model_rate(
        self, data: bytes, audio_format: AudioFormat, model_rate_hz: int
    ) -> tuple[DecodedAudio, FloatArray]:
        decoded = decode_clip(data, audio_format)
        if decoded.duration_s > self._settings.max_stream_duration_s:
            raise OutOfRangeError(
                f"the clip lasts {decoded.duration_s:.1f} s, longer than the server's "
                f"max_stream_duration_s of {self._settings.max_stream_duration_s} s"
            )
        return decoded, resample(decoded.samples, decoded.sample_rate_hz, model_rate_hz)

    async def StreamClassify(  # noqa: N802 (gRPC's method name)
        self,
        request_iterator: AsyncIterator[pb.StreamClassifyRequest],
        context: Context,
    ) -> None:
        """Classifies a live stream; see stream_handler.StreamHandler."""
        handler = StreamHandler(self._registry, self._settings, self._metrics, self._state, context)
        await handler.run()

    async def ListModels(  # noqa: N802 (gRPC's method name)
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        """Every serving model with its versions."""
        return pb.ListModelsResponse(
            models=[
                conversion.model_info(self._registry.versions(name))
                for name in self._registry.names()
            ]
        )

    async def GetModel(  # noqa: N802 (gRPC's method name)
        self, request: pb.GetModelRequest, context: Context
    ) -> pb.ModelInfo:
        """One model; NOT_FOUND when it (or the version asked for) is not serving."""
        model = self._registry.resolve(request.model.name, request.model.version)
        note_model(model.name, model.version)
        return conversion.model_info(self._registry.versions(model.name))
