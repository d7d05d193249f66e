"""Conversion from mozart.v1 protobuf messages to the SDK's frozen dataclasses."""

from __future__ import annotations

from collections.abc import Iterable

from grpc_health.v1 import health_pb2

from mozart_client.results import (
    ClassifyResult,
    LabelScore,
    ModelInfo,
    ServingStatus,
    StreamNotice,
    StreamResult,
    Summary,
    WindowResult,
)
from mozart_proto.v1 import audio_classifier_pb2 as pb

_TASK_NAMES = {pb.TASK_MULTICLASS: "multiclass", pb.TASK_MULTILABEL: "multilabel"}


def _label_scores(scores: Iterable[pb.LabelScore]) -> tuple[LabelScore, ...]:
    return tuple(LabelScore(label=s.label, score=s.score) for s in scores)


def window_from_proto(
    window: pb.WindowResult, request_id: str = "", latency_ms: float | None = None
) -> WindowResult:
    """Builds a WindowResult from its message."""
    return WindowResult(
        index=window.index,
        start_ms=window.start_ms,
        end_ms=window.end_ms,
        top_k=_label_scores(window.top_k),
        scores=tuple(window.scores),
        smoothed_scores=tuple(window.smoothed_scores),
        model_name=window.model_name,
        model_version=window.model_version,
        queue_time_us=window.queue_time_us,
        compute_time_us=window.compute_time_us,
        latency_ms=latency_ms,
        request_id=request_id,
    )


def summary_from_proto(summary: pb.Summary, request_id: str = "") -> Summary:
    """Builds a Summary from its message."""
    return Summary(
        top_k=_label_scores(summary.top_k),
        scores=tuple(summary.scores),
        window_count=summary.window_count,
        audio_duration_ms=summary.audio_duration_ms,
        request_id=request_id,
    )


def classify_result_from_proto(response: pb.ClassifyResponse) -> ClassifyResult:
    """Builds a ClassifyResult from a ClassifyResponse."""
    return ClassifyResult(
        model_name=response.model_name,
        model_version=response.model_version,
        labels=tuple(response.labels),
        windows=tuple(window_from_proto(w, response.request_id) for w in response.windows),
        summary=summary_from_proto(response.summary, response.request_id),
        request_id=response.request_id,
    )


def stream_result_from_proto(
    response: pb.StreamClassifyResponse, latency_ms: float | None = None
) -> StreamResult | None:
    """Builds the typed result of one stream message; None for an empty message."""
    kind = response.WhichOneof("result")
    if kind == "window":
        return window_from_proto(response.window, response.request_id, latency_ms)
    if kind == "summary":
        return summary_from_proto(response.summary, response.request_id)
    if kind == "notice":
        return StreamNotice(
            code=response.notice.code,
            message=response.notice.message,
            request_id=response.request_id,
        )
    return None


def model_info_from_proto(info: pb.ModelInfo) -> ModelInfo:
    """Builds a ModelInfo from its message."""
    return ModelInfo(
        name=info.name,
        versions=tuple(info.versions),
        labels=tuple(info.labels),
        task=_TASK_NAMES.get(info.task, "unspecified"),
        sample_rate_hz=info.sample_rate_hz,
        window_samples=info.window_samples,
        window_ms=info.window_ms,
        default_hop_ms=info.default_hop_ms,
    )


def serving_status_from_proto(status: int) -> ServingStatus:
    """Maps a `grpc.health.v1` serving status number to ServingStatus."""
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    return ServingStatus.__members__.get(name, ServingStatus.UNKNOWN)
