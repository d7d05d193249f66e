"""Proto <-> domain conversion for mozart.v1: request checks and response building."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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


def top_k_scores(labels: Sequence[str], scores: FloatArray, k: int) -> list[pb.LabelScore]:
    """The k best labels, best first (ties keep label order)."""
    order = np.argsort(-scores, kind="stable")[:k]
    return [pb.LabelScore(label=labels[i], score=float(scores[i])) for i in order]


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
    )


def window_result(manifest: Manifest, window: WindowScores, top_k: int) -> pb.WindowResult:
    """Builds one window's result; times are in the model's sample clock."""
    rate = manifest.sample_rate_hz
    return pb.WindowResult(
        index=window.index,
        start_ms=window.start_sample * 1000 // rate,
        end_ms=(window.start_sample + manifest.window_samples) * 1000 // rate,
        top_k=top_k_scores(manifest.labels, window.scores, top_k),
        scores=window.scores.tolist(),
        smoothed_scores=window.smoothed.tolist(),
        model_name=manifest.name,
        model_version=manifest.version,
        queue_time_us=round(window.queue_time_s * 1e6),
        compute_time_us=round(window.compute_time_s * 1e6),
    )


def summary(manifest: Manifest, result: Summary, top_k: int) -> pb.Summary:
    """The summary message: the mean of the window scores."""
    return pb.Summary(
        top_k=top_k_scores(manifest.labels, result.scores, top_k) if result.window_count else [],
        scores=result.scores.tolist(),
        window_count=result.window_count,
        audio_duration_ms=round(result.audio_duration_s * 1000),
    )


def classify_response(result: ClipResult, request_id: str) -> pb.ClassifyResponse:
    """The ClassifyResponse of a whole clip."""
    manifest = result.manifest
    return pb.ClassifyResponse(
        model_name=manifest.name,
        model_version=manifest.version,
        labels=list(manifest.labels),
        windows=[window_result(manifest, window, result.top_k) for window in result.windows],
        summary=summary(manifest, result.summary, result.top_k),
        request_id=request_id,
    )


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
