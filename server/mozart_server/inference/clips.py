"""Whole clips and ready-made tensors: admit, resolve a version, decode, window, batch, score.

Admission comes first and costs no decoding: the call cap, the hop, and, from the
clip's size or header, its duration, its window count and whether the queue has room.
A clip with more windows than the queue holds goes to the batcher in slices, each
waiting for room, so a long clip is slow under load but never refused forever.

Overlapping windows (a hop shorter than the window, and a whole number of STFT hops)
share their mel frames when the engine is split: each slice's frames are computed once,
in a worker thread, the slice's mel windows are cut from them, and only the body runs
for them in the batch. Other hops send samples, and the batch runs the front end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from mozart_server.audio.decode import (
    RAW_ENCODINGS,
    AudioFormat,
    DecodedAudio,
    DecodeLimits,
    check_duration,
    decode_clip,
    resample,
)
from mozart_server.audio.probe import estimated_length
from mozart_server.audio.windowing import (
    cut_frame_windows,
    cut_window_range,
    hop_samples,
    window_count,
)
from mozart_server.batching.batcher import BatchResult, DynamicBatcher, Reservation
from mozart_server.engines import Engine, EngineOutputs
from mozart_server.engines.split import FrameGeometry, span_frames
from mozart_server.errors import (
    InvalidArgumentError,
    OutOfRangeError,
    ResourceExhaustedError,
)
from mozart_server.inference.flags import flag_window, window_levels_dbfs
from mozart_server.inference.guards import ensure_finite
from mozart_server.inference.options import WindowOptions, window_options
from mozart_server.inference.results import ClipResult, WindowScores, summarize
from mozart_server.inference.shadow import start_shadow
from mozart_server.models.manifest import Manifest
from mozart_server.models.registry import ModelRegistry, ServingVersion
from mozart_server.observability.context import note_model
from mozart_server.observability.metrics import ServerMetrics
from mozart_server.settings import AdmissionSettings, StreamSettings
from mozart_server.tensors import FloatArray

#: Raw PCM up to this size at the model's rate converts on the event loop: it is one
#: numpy conversion of tens of microseconds, cheaper than the trip to a worker thread
#: (about 0.1-0.5 ms on a busy 2-core machine). 256 KiB is 8 s of 16-bit mono at 16 kHz.
INLINE_DECODE_MAX_BYTES = 256 * 1024
#: A clip with more windows than its queue holds is sent in slices of this share of the
#: queue, two at a time, so other callers keep room while it runs.
SLICE_SHARE_OF_QUEUE = 4


@dataclass(frozen=True)
class ClipRequest:
    """A clip to classify, as every API hands it over."""

    model_name: str
    model_version: str
    audio: bytes
    audio_format: AudioFormat
    hop_ms: int = 0
    top_k: int = 0
    routing_key: str = ""  # splits unversioned calls under a rollout (x-mozart-routing-key)
    include_embedding: bool = False  # also return each window's `embedding` output


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
        self,
        registry: ModelRegistry,
        settings: StreamSettings,
        admission: AdmissionSettings,
        metrics: ServerMetrics,
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._admission = admission
        self._metrics = metrics
        self._in_flight = 0

    @contextlib.contextmanager
    def _call_slot(self) -> Iterator[None]:
        """Holds one of the `max_unary_calls_in_flight` slots, or refuses at once."""
        limit = self._admission.max_unary_calls_in_flight
        if self._in_flight >= limit:
            self._refuse_early("calls_in_flight")
            raise ResourceExhaustedError(
                f"the server is serving {limit} calls already (max_unary_calls_in_flight); "
                "retry with backoff"
            )
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    def _refuse_early(self, reason: str) -> None:
        self._metrics.calls_refused_early.labels(reason=reason).inc()

    async def classify(self, request: ClipRequest, deadline: float | None) -> ClipResult:
        """Per-window scores of a clip and their mean.

        Args:
            request: the clip and how to window it.
            deadline: `time.monotonic()` after which the answer is no longer wanted.

        Raises:
            MozartError: a subclass naming what was wrong (see the proto's error contract).
        """
        with contextlib.ExitStack() as call:
            call.enter_context(self._call_slot())
            model = call.enter_context(
                self._registry.lease(request.model_name, request.model_version, request.routing_key)
            )
            note_model(model.name, model.version)
            manifest = model.manifest
            options = self._options(manifest, request)
            hop = hop_samples(options.hop_ms, manifest.sample_rate_hz)
            reserved: Reservation | None = None
            length = estimated_length(request.audio, request.audio_format)
            if length is not None:
                estimate = self._admit(model, *length, hop)
                if estimate <= model.batcher.capacity:
                    # Hold the room while decoding, so a call admitted is not refused later.
                    reserved = call.enter_context(self._reservation(model, estimate))
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
            count = window_count(len(samples), manifest.window_samples, hop)
            self._check_window_count(count, hop, manifest)
            scores, embeddings, queue_s, compute_s = await self._score(
                model, samples, hop, count, deadline=deadline, reserved=reserved
            )
            router = self._registry.router
            router.record_scores(model.name, model.version, list(manifest.labels), scores)
            if router.shadow_of(model.name, model.version):
                windows = cut_window_range(samples, manifest.window_samples, hop, 0, count)
                start_shadow(self._registry, self._metrics, model, windows, scores)
        levels = window_levels_dbfs(samples, manifest.window_samples, hop, len(scores))
        flags = [
            flag_window(manifest, float(level), row)
            for level, row in zip(levels, scores, strict=True)
        ]
        window_scores = tuple(
            WindowScores(
                index=index,
                start_sample=index * hop,
                scores=scores[index],
                smoothed=scores[index],
                queue_time_s=queue_s,
                compute_time_s=compute_s,
                embedding=embeddings[index] if request.include_embedding else None,
                flags=flags[index],
            )
            for index in range(len(scores))
        )
        summary = summarize(manifest, list(scores), decoded.duration_s, flags)
        return ClipResult(manifest, options.top_k, window_scores, summary)

    def _options(self, manifest: Manifest, request: ClipRequest) -> WindowOptions:
        options = window_options(
            manifest, request.hop_ms, request.top_k, 0.0, self._settings.default_top_k
        )
        smallest = max(
            self._admission.min_hop_ms,
            int(np.ceil(manifest.window_ms * self._admission.min_hop_window_fraction)),
        )
        if options.hop_ms < smallest:
            self._refuse_early("hop")
            raise InvalidArgumentError(
                f"hop_ms is {options.hop_ms}; this server's smallest hop for this model is "
                f"{smallest} ms (min_hop_ms, min_hop_window_fraction)"
            )
        return options

    def _admit(self, model: ServingVersion, frames: int, rate_hz: int, hop: int) -> int:
        """Refuses, before decoding, a clip too long or with too many windows; its windows."""
        manifest = model.manifest
        try:
            check_duration(frames, rate_hz, self._settings.max_stream_duration_s, "")
        except OutOfRangeError:
            self._refuse_early("duration")
            raise
        samples = round(frames * manifest.sample_rate_hz / rate_hz)
        count = window_count(samples, manifest.window_samples, hop)
        self._check_window_count(count, hop, manifest)
        return count

    @contextlib.contextmanager
    def _reservation(self, model: ServingVersion, count: int) -> Iterator[Reservation]:
        """Room for the clip's windows in its version's queue, or a refusal before decoding."""
        with contextlib.ExitStack() as held:
            try:
                reserved = held.enter_context(model.batcher.reservation(count))
            except ResourceExhaustedError:
                self._refuse_early("queue_full")
                raise
            yield reserved

    def _check_window_count(self, count: int, hop: int, manifest: Manifest) -> None:
        limit = self._admission.max_windows_per_request
        if count > limit:
            self._refuse_early("windows")
            hop_ms = hop * 1000 // manifest.sample_rate_hz
            raise OutOfRangeError(
                f"the clip would be cut into {count} windows at a hop of {hop_ms} ms; this "
                f"server takes at most {limit} per call (max_windows_per_request): use a "
                "larger hop_ms, split the clip, or stream it"
            )

    async def _score(
        self,
        model: ServingVersion,
        samples: FloatArray,
        hop: int,
        count: int,
        *,
        deadline: float | None,
        reserved: Reservation | None,
    ) -> tuple[FloatArray, FloatArray, float, float]:
        """Every window's scores and embeddings, in one submission or in slices;
        (scores, embeddings, queue s, compute s)."""
        batcher = model.batcher
        if count <= batcher.capacity:
            windows, features = await _windows(model, samples, hop, 0, count)
            result = await batcher.submit(windows, deadline, reserved, features=features)
            ensure_finite(result.outputs.probabilities, model, self._metrics)
            outputs = result.outputs
            queue_s, compute_s = result.queue_time_s, result.compute_time_s
            return outputs.probabilities, outputs.embedding, queue_s, compute_s
        size = max(1, batcher.capacity // SLICE_SHARE_OF_QUEUE)
        results: list[BatchResult] = []
        in_flight: deque[asyncio.Task[BatchResult]] = deque()
        try:
            for start in range(0, count, size):
                slice_count = min(size, count - start)
                # Cut before waiting: nothing may await between the room and the submit.
                windows, features = await _windows(model, samples, hop, start, slice_count)
                await batcher.wait_for_room(slice_count, deadline)
                submitted = batcher.submit(windows, deadline, features=features)
                in_flight.append(asyncio.ensure_future(submitted))
                if len(in_flight) == 2:
                    results.append(await in_flight.popleft())
            while in_flight:
                results.append(await in_flight.popleft())
        finally:
            for task in in_flight:  # the call failed or was cancelled: drop what is queued
                task.cancel()
        scores = np.concatenate([result.outputs.probabilities for result in results])
        ensure_finite(scores, model, self._metrics)
        return (
            scores,
            np.concatenate([result.outputs.embedding for result in results]),
            max(result.queue_time_s for result in results),
            sum(result.compute_time_s for result in results),
        )

    def _decode_to_model_rate(
        self, data: bytes, audio_format: AudioFormat, model_rate_hz: int
    ) -> tuple[DecodedAudio, FloatArray]:
        # decode_clip stops at the duration limit (OUT_OF_RANGE), header first, then blocks.
        limits = DecodeLimits(self._settings.max_stream_duration_s, self._settings.float_samples)
        decoded = decode_clip(data, audio_format, limits)
        return decoded, resample(decoded.samples, decoded.sample_rate_hz, model_rate_hz)

    async def infer(
        self,
        model_name: str,
        model_version: str,
        read_windows: Callable[[ServingVersion], FloatArray],
        deadline: float | None,
        routing_key: str = "",
    ) -> tuple[ServingVersion, EngineOutputs]:
        """Runs windows that the caller reads from its request once the version is known.

        Raises:
            MozartError: from `read_windows`, the admission checks, the registry or the
                batcher; NonFiniteScoresError when the model returns NaN or infinity.
        """
        lease = self._registry.lease(model_name, model_version, routing_key)
        with self._call_slot(), lease as model:
            note_model(model.name, model.version)
            waveforms = read_windows(model)
            count = int(waveforms.shape[0])
            limit = self._admission.max_windows_per_request
            if count > limit:
                self._refuse_early("windows")
                raise OutOfRangeError(
                    f"the request holds {count} windows; this server takes at most {limit} "
                    "per call (max_windows_per_request)"
                )
            result = await _submit(model.batcher, waveforms, deadline)
            # Inside the lease, so a rollout counts a non-finite answer against the version.
            ensure_finite(result.outputs.probabilities, model, self._metrics)
            self._registry.router.record_scores(
                model.name, model.version, list(model.manifest.labels), result.outputs.probabilities
            )
        return model, result.outputs


async def _windows(
    model: ServingVersion, samples: FloatArray, hop: int, first: int, count: int
) -> tuple[FloatArray, FloatArray | None]:
    """Windows first..first+count-1 of a clip, and their mel windows when they overlap.

    Overlapping windows are cut, and their frames computed, in one trip to a worker
    thread (tens of milliseconds for a long clip, too long for the event loop).
    """
    window = model.manifest.window_samples
    geometry = model.batcher.frames
    if geometry is None or count < 2 or hop >= window or not geometry.divides(hop):
        return cut_window_range(samples, window, hop, first, count), None
    return await asyncio.to_thread(
        _cut_with_frames, model.engine, geometry, samples, hop, first, count, window
    )


def _cut_with_frames(  # noqa: PLR0917 (one private call site)
    engine: Engine,
    geometry: FrameGeometry,
    samples: FloatArray,
    hop: int,
    first: int,
    count: int,
    window: int,
) -> tuple[FloatArray, FloatArray]:
    """The windows, and their mel windows cut from the frames of their span, computed once."""
    waveforms = cut_window_range(samples, window, hop, first, count)
    span = samples[first * hop : (first + count - 1) * hop + window]
    frames = span_frames(engine.features, geometry, span)
    step = hop // geometry.hop_length
    return waveforms, cut_frame_windows(frames, geometry.window_frames, step, count)


async def _submit(
    batcher: DynamicBatcher, waveforms: FloatArray, deadline: float | None
) -> BatchResult:
    """Submits ready-made windows; more than the queue holds can never fit, so say so."""
    if waveforms.shape[0] > batcher.capacity:
        raise OutOfRangeError(
            f"the request holds {waveforms.shape[0]} windows; the model's queue holds "
            f"{batcher.capacity} (max_queue_windows): send fewer per call"
        )
    return await batcher.submit(waveforms, deadline)
