"""Conversion between mozart.v1 protobuf messages and the SDK's frozen dataclasses.

Both clients build their requests and read their answers here, so `Client` and
`AsyncClient` differ only in how they wait.
"""

from __future__ import annotations

from collections.abc import Iterable

from grpc_health.v1 import health_pb2

from mozart_client.errors import InvalidInputError
from mozart_client.results import (
    ClassifyResult,
    LabelScore,
    ModelInfo,
    ModelStatus,
    ServingStatus,
    StreamNotice,
    StreamResult,
    Summary,
    VersionState,
    VersionStatus,
    WindowResult,
)
from mozart_proto.v1 import audio_classifier_pb2 as pb

_TASK_NAMES = {pb.TASK_MULTICLASS: "multiclass", pb.TASK_MULTILABEL: "multilabel"}

_VERSION_STATES = {
    pb.VERSION_STATE_LOADING: VersionState.LOADING,
    pb.VERSION_STATE_READY: VersionState.READY,
    pb.VERSION_STATE_UNLOADING: VersionState.UNLOADING,
    pb.VERSION_STATE_UNAVAILABLE: VersionState.UNAVAILABLE,
}


def _label_scores(scores: Iterable[pb.LabelScore]) -> tuple[LabelScore, ...]:
    return tuple(LabelScore(label=s.label, score=s.score) for s in scores)


def window_from_proto(
    window: pb.WindowResult,
    request_id: str = "",
    latency_ms: float | None = None,
    labels: tuple[str, ...] = (),
) -> WindowResult:
    """Builds a WindowResult from its message; `labels` name its scores."""
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
        # Servers older than the field send none: the raw top-k is then the only one.
        smoothed_top_k=_label_scores(window.smoothed_top_k or window.top_k),
        labels=labels,
        embedding=tuple(window.embedding),
        rms_dbfs=window.rms_dbfs,
        silent=window.silent,
        low_confidence=window.low_confidence,
    )


def summary_from_proto(
    summary: pb.Summary, request_id: str = "", labels: tuple[str, ...] = ()
) -> Summary:
    """Builds a Summary from its message; `labels` name its scores."""
    return Summary(
        top_k=_label_scores(summary.top_k),
        scores=tuple(summary.scores),
        window_count=summary.window_count,
        audio_duration_ms=summary.audio_duration_ms,
        request_id=request_id,
        labels=labels,
        silent_window_count=summary.silent_window_count,
        low_confidence_window_count=summary.low_confidence_window_count,
    )


def classify_result_from_proto(response: pb.ClassifyResponse) -> ClassifyResult:
    """Builds a ClassifyResult from a ClassifyResponse."""
    labels, request_id = tuple(response.labels), response.request_id
    return ClassifyResult(
        model_name=response.model_name,
        model_version=response.model_version,
        labels=labels,
        windows=tuple(window_from_proto(w, request_id, None, labels) for w in response.windows),
        summary=summary_from_proto(response.summary, request_id, labels),
        request_id=request_id,
    )


def stream_result_from_proto(
    response: pb.StreamClassifyResponse,
    latency_ms: float | None = None,
    labels: tuple[str, ...] = (),
) -> StreamResult | None:
    """Builds the typed result of one stream message; None for an empty message.

    `labels` are the stream's, from its first result (`StreamClassifyResponse.labels`).
    """
    kind = response.WhichOneof("result")
    if kind == "window":
        return window_from_proto(response.window, response.request_id, latency_ms, labels)
    if kind == "summary":
        return summary_from_proto(response.summary, response.request_id, labels)
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


def model_status_from_proto(status: pb.ModelStatus) -> ModelStatus:
    """Builds a ModelStatus from its message; unknown states become UNSPECIFIED."""
    return ModelStatus(
        name=status.name,
        versions=tuple(
            VersionStatus(
                version=v.version,
                state=_VERSION_STATES.get(v.state, VersionState.UNSPECIFIED),
                reason=v.reason,
            )
            for v in status.versions
        ),
    )


def model_statuses_from_proto(response: pb.ListModelStatusResponse) -> list[ModelStatus]:
    """Builds one ModelStatus per model of a ListModelStatusResponse."""
    return [model_status_from_proto(status) for status in response.models]


def load_model_request(name: str, reload: bool) -> pb.LoadModelRequest:
    """The LoadModel request; raises InvalidInputError before sending for no name."""
    return pb.LoadModelRequest(name=_model_to_control(name), reload=reload)


def unload_model_request(name: str) -> pb.UnloadModelRequest:
    """The UnloadModel request; raises InvalidInputError before sending for no name."""
    return pb.UnloadModelRequest(name=_model_to_control(name))


def _model_to_control(name: str) -> str:
    # An empty name would reach the server as "no such model"; say what is wrong here.
    if not name or not name.strip():
        raise InvalidInputError("name the model to load or unload")
    return name


def serving_status_from_proto(status: int) -> ServingStatus:
    """Maps a `grpc.health.v1` serving status number to ServingStatus."""
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    return ServingStatus.__members__.get(name, ServingStatus.UNKNOWN)
