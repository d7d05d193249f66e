"""Proto <-> domain conversion for mozart.v1: request checks and response building."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_server.audio.decode import CONTAINER_ENCODINGS, AudioFormat, Encoding
from mozart_server.errors import InvalidArgumentError
from mozart_server.inference.clips import ClipRequest
from mozart_server.inference.results import ClipResult, Summary, WindowScores
from mozart_server.inference.streams import StreamRequest
from mozart_server.models.control import ModelStatus, VersionState
from mozart_server.models.manifest import Manifest
from mozart_server.models.registry import ServingVersion
from mozart_server.models.rollout import RolloutState, RolloutStatus
from mozart_server.models.rollout_policy import Guardrails, RolloutPolicy
from mozart_server.tensors import FloatArray

# Raw PCM, AUTO, and every container of the shared list (mozart_proto.v1.audio_formats).
_ENCODINGS: dict[int, Encoding] = {
    pb.AUDIO_ENCODING_PCM_S16LE: Encoding.PCM_S16LE,
    pb.AUDIO_ENCODING_PCM_F32LE: Encoding.PCM_F32LE,
    **{
        pb.AudioEncoding.Value(f"AUDIO_ENCODING_{container.wire_name}"): encoding
        for encoding, container in CONTAINER_ENCODINGS.items()
    },
    pb.AUDIO_ENCODING_AUTO: Encoding.AUTO,
}
_ENCODING_NAMES = ", ".join(pb.AudioEncoding.Name(value).removeprefix("AUDIO_ENCODING_")
                            for value in _ENCODINGS)  # fmt: skip
_TASKS = {"multiclass": pb.TASK_MULTICLASS, "multilabel": pb.TASK_MULTILABEL}


def audio_format(message: pb.AudioFormat) -> AudioFormat:
    """Converts an AudioFormat message; checks happen when the audio is decoded.

    Raises:
        InvalidArgumentError: the encoding is unspecified or unknown.
    """
    encoding = _ENCODINGS.get(message.encoding)
    if encoding is None:
        raise InvalidArgumentError(
            f"format.encoding {message.encoding} is unspecified or unknown; use one of "
            f"{_ENCODING_NAMES}"
        )
    return AudioFormat(encoding, int(message.sample_rate_hz), int(message.channels))


#: Above this many labels the top k come from a partial sort in numpy; below it, sorting
#: the Python floats (already made for the `scores` field) costs less than a numpy call.
_PARTITION_MIN_LABELS = 64


def _top_indices(scores: FloatArray, values: list[float], k: int) -> list[int]:
    """Indices of the k best scores, best first; ties keep label order (a stable sort)."""
    count = len(values)
    if k <= 0:
        return []
    if count < _PARTITION_MIN_LABELS or k >= count:
        # sorted(reverse=True) stays stable: equal scores keep their label order.
        return sorted(range(count), key=values.__getitem__, reverse=True)[:k]
    kth_best = np.partition(scores, count - k)[count - k]
    candidates = np.flatnonzero(scores >= kth_best)  # every tie of the k-th, in label order
    order = np.argsort(-scores[candidates], kind="stable")[:k]
    return [int(i) for i in candidates[order]]


def _add_top_k(
    target: Any, labels: Sequence[str], scores: FloatArray, values: list[float], k: int
) -> None:
    """Appends the k best labels to a repeated LabelScore field, best first."""
    add = target.add
    for i in _top_indices(scores, values, k):
        add(label=labels[i], score=values[i])


def top_k_scores(labels: Sequence[str], scores: FloatArray, k: int) -> list[pb.LabelScore]:
    """The k best labels, best first (ties keep label order)."""
    values = scores.tolist()
    return [pb.LabelScore(label=labels[i], score=values[i])
            for i in _top_indices(scores, values, k)]  # fmt: skip


ROUTING_KEY_METADATA = "x-mozart-routing-key"


def routing_key(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The caller's rollout routing key (metadata x-mozart-routing-key), "" when none."""
    for key, value in metadata or ():
        if key == ROUTING_KEY_METADATA:
            return value.decode(errors="replace") if isinstance(value, bytes) else value
    return ""


def clip_request(request: pb.ClassifyRequest, routing: str = "") -> ClipRequest:
    """Converts a ClassifyRequest (its format is checked here, its audio when decoded)."""
    return ClipRequest(
        routing_key=routing,
        model_name=request.model.name,
        model_version=request.model.version,
        audio=request.audio,
        audio_format=audio_format(request.format),
        hop_ms=request.hop_ms,
        top_k=request.top_k,
        include_embedding=request.include_embedding,
    )


def stream_request(config: pb.StreamConfig, routing: str = "") -> StreamRequest:
    """Converts a StreamConfig."""
    return StreamRequest(
        routing_key=routing,
        model_name=config.model.name,
        model_version=config.model.version,
        audio_format=audio_format(config.format),
        hop_ms=config.hop_ms,
        top_k=config.top_k,
        smoothing=config.smoothing,
        include_embedding=config.include_embedding,
    )


def fill_window_result(
    target: pb.WindowResult, manifest: Manifest, window: WindowScores, top_k: int
) -> None:
    """Fills an empty WindowResult in place (e.g. a response's field, so it is not copied);
    times are in the model's sample clock. The smoothed top-k is the raw one when the
    scores are not smoothed (Classify, smoothing 0)."""
    rate = manifest.sample_rate_hz
    labels = manifest.labels
    values = window.scores.tolist()
    target.index = window.index
    target.start_ms = window.start_sample * 1000 // rate
    target.end_ms = (window.start_sample + manifest.window_samples) * 1000 // rate
    target.scores.extend(values)
    best = _top_indices(window.scores, values, top_k)
    add_top, add_smoothed = target.top_k.add, target.smoothed_top_k.add
    for i in best:
        add_top(label=labels[i], score=values[i])
    if window.smoothed is window.scores:
        target.smoothed_scores.extend(values)
        for i in best:
            add_smoothed(label=labels[i], score=values[i])
    else:
        smoothed = window.smoothed.tolist()
        target.smoothed_scores.extend(smoothed)
        for i in _top_indices(window.smoothed, smoothed, top_k):
            add_smoothed(label=labels[i], score=smoothed[i])
    if window.embedding is not None:
        target.embedding.extend(window.embedding.tolist())
    target.model_name = manifest.name
    target.model_version = manifest.version
    target.queue_time_us = round(window.queue_time_s * 1e6)
    target.compute_time_us = round(window.compute_time_s * 1e6)
    if window.flags is not None:
        target.rms_dbfs = window.flags.rms_dbfs
        target.silent = window.flags.silent
        target.low_confidence = window.flags.low_confidence


def window_result(manifest: Manifest, window: WindowScores, top_k: int) -> pb.WindowResult:
    """Builds one window's result; times are in the model's sample clock."""
    message = pb.WindowResult()
    fill_window_result(message, manifest, window, top_k)
    return message


def fill_summary(target: pb.Summary, manifest: Manifest, result: Summary, top_k: int) -> None:
    """Fills an empty Summary in place: the mean of the non-silent windows' scores."""
    values = result.scores.tolist()
    if result.window_count > result.silent_window_count:
        _add_top_k(target.top_k, manifest.labels, result.scores, values, top_k)
    target.scores.extend(values)
    target.window_count = result.window_count
    target.silent_window_count = result.silent_window_count
    target.low_confidence_window_count = result.low_confidence_window_count
    target.audio_duration_ms = round(result.audio_duration_s * 1000)


def summary(manifest: Manifest, result: Summary, top_k: int) -> pb.Summary:
    """The summary message: the mean of the window scores."""
    message = pb.Summary()
    fill_summary(message, manifest, result, top_k)
    return message


def classify_response(result: ClipResult, request_id: str) -> pb.ClassifyResponse:
    """The ClassifyResponse of a whole clip, built in place (no submessage is copied)."""
    manifest = result.manifest
    response = pb.ClassifyResponse(
        model_name=manifest.name,
        model_version=manifest.version,
        labels=manifest.labels,
        request_id=request_id,
    )
    add_window = response.windows.add
    for window in result.windows:
        fill_window_result(add_window(), manifest, window, result.top_k)
    fill_summary(response.summary, manifest, result.summary, result.top_k)
    return response


def model_info(versions: Sequence[ServingVersion]) -> pb.ModelInfo:
    """Describes a model from its serving versions (oldest first)."""
    newest = versions[-1].manifest
    return pb.ModelInfo(
        name=newest.name,
        versions=[model.version for model in versions],
        labels=list(newest.labels),
        task=_TASKS[newest.task],
        sample_rate_hz=newest.sample_rate_hz,
        window_samples=newest.window_samples,
        window_ms=newest.window_ms,
        default_hop_ms=newest.default_hop_ms,
    )


_STATES = {
    VersionState.LOADING: pb.VERSION_STATE_LOADING,
    VersionState.READY: pb.VERSION_STATE_READY,
    VersionState.UNLOADING: pb.VERSION_STATE_UNLOADING,
    VersionState.UNAVAILABLE: pb.VERSION_STATE_UNAVAILABLE,
}


def model_status(status: ModelStatus) -> pb.ModelStatus:
    """A model's version states."""
    return pb.ModelStatus(
        name=status.name,
        versions=[
            pb.VersionStatus(version=entry.version, state=_STATES[entry.state],
                             reason=entry.reason)
            for entry in status.versions
        ],
    )  # fmt: skip


def rollout_policy(message: pb.RolloutPolicy) -> RolloutPolicy:
    """Converts a RolloutPolicy; unset guardrails take their defaults (0 ratios: off).

    Raises:
        InvalidArgumentError: a weight is out of range (the rest is checked by the policy).
    """
    defaults = Guardrails()
    rails = message.guardrails
    if message.HasField("guardrails"):
        guardrails = Guardrails(
            max_error_ratio=rails.max_error_ratio,
            max_p99_latency_ratio=rails.max_p99_latency_ratio,
            min_agreement=rails.min_agreement,
            min_samples=rails.min_samples or defaults.min_samples,
            window_size=rails.window_size or max(defaults.window_size, rails.min_samples),
        )
    else:
        guardrails = defaults
    if any(weight > 100 for weight in message.weights.values()):
        raise InvalidArgumentError(f"rollout weights are percentages: {dict(message.weights)}")
    return RolloutPolicy(
        weights=dict(message.weights),
        shadow=message.shadow,
        guardrails=guardrails,
        auto_promote=message.auto_promote,
        promote_after_s=message.promote_after_s,
    )


_ROLLOUT_STATES = {
    RolloutState.ACTIVE: pb.ROLLOUT_STATE_ACTIVE,
    RolloutState.ROLLED_BACK: pb.ROLLOUT_STATE_ROLLED_BACK,
    RolloutState.PROMOTED: pb.ROLLOUT_STATE_PROMOTED,
}


def rollout_status(name: str, status: RolloutStatus | None) -> pb.RolloutStatus:
    """A model's rollout now; state NONE without one."""
    if status is None:
        return pb.RolloutStatus(name=name, state=pb.ROLLOUT_STATE_NONE)
    policy, rails = status.policy, status.policy.guardrails
    event = status.last_event
    return pb.RolloutStatus(
        name=name,
        state=_ROLLOUT_STATES[status.state],
        policy=pb.RolloutPolicy(
            weights=dict(policy.weights),
            shadow=policy.shadow,
            guardrails=pb.RolloutGuardrails(
                max_error_ratio=rails.max_error_ratio,
                max_p99_latency_ratio=rails.max_p99_latency_ratio,
                min_agreement=rails.min_agreement,
                min_samples=rails.min_samples,
                window_size=rails.window_size,
            ),
            auto_promote=policy.auto_promote,
            promote_after_s=policy.promote_after_s,
        ),
        weights=dict(status.weights),
        baseline=status.baseline,
        shadow=status.shadow,
        source=status.source,
        last_event=(
            pb.RolloutEvent(kind=event.kind, version=event.version, reason=event.reason,
                            figures=dict(event.figures), unix_ms=event.unix_ms)
            if event is not None else None
        ),
        versions=[
            pb.RolloutVersionFigures(
                version=entry.version, samples=entry.samples, errors=entry.faults,
                p99_latency_ms=entry.p99_latency_s * 1000,
                agreement_samples=entry.agreement_samples, agreement=entry.agreement,
            )
            for entry in status.versions
        ],
    )  # fmt: skip
