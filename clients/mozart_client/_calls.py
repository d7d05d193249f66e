"""The one core of `Client` and `AsyncClient`: what each call sends and how its answer reads.

Both clients ask this module for a prepared call (the stub method, the request, the
deadline, the metadata with the request id, and how to parse the answer), send it
their own way (blocking or awaited), and hand failures to `errors.from_rpc_error`
with the call's request id. Everything that can be checked without the server is
checked here, when the method is called, in both clients alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import grpc
from grpc_health.v1 import health_pb2

from mozart_client._conversion import (
    classify_result_from_proto,
    load_model_request,
    model_info_from_proto,
    model_status_from_proto,
    model_statuses_from_proto,
    serving_status_from_proto,
    unload_model_request,
)
from mozart_client._rollout import (
    get_rollout_request,
    rollout_status_from_proto,
    set_rollout_request,
)
from mozart_client.audio import AudioInput, WireAudio, clip_audio
from mozart_client.connection import ConnectionOptions, new_request_id
from mozart_client.errors import InvalidInputError, ResourceExhaustedError
from mozart_client.results import (
    ClassifyResult,
    HealthStatus,
    ModelInfo,
    ModelStatus,
    RolloutStatus,
    StreamNotice,
    StreamResult,
    Summary,
    WindowResult,
)
from mozart_proto.v1 import audio_classifier_pb2 as pb

R = TypeVar("R")
Service = Literal["classifier", "health"]


@dataclass(frozen=True)
class UnaryCall(Generic[R]):
    """One unary call, ready to send.

    Attributes:
        service: Which stub serves it.
        method: The stub's method name (gRPC's, e.g. "Classify").
        request: The request message.
        parse: Turns the response message into the SDK's result.
        timeout_s: The deadline, None for none.
        metadata: Request id, and the bearer token when there is one.
        request_id: The id the call is sent under.
    """

    service: Service
    method: str
    request: Any
    parse: Callable[[Any], R]
    timeout_s: float | None
    metadata: tuple[tuple[str, str], ...]
    request_id: str


def check_window_options(hop_ms: int, top_k: int, smoothing: float = 0.0) -> None:
    """Refuses, before sending, options no server takes (the server checks the rest)."""
    if hop_ms < 0:
        raise InvalidInputError(f"hop_ms must be 0 (the model's default) or more, got {hop_ms}")
    if top_k < 0:
        raise InvalidInputError(f"top_k must be 0 (the server's default) or more, got {top_k}")
    if not 0.0 <= smoothing < 1.0:
        raise InvalidInputError(f"smoothing must be in [0, 1), got {smoothing}")


class CallCore:
    """Builds every call of a connection; holds the server's only model once known."""

    def __init__(self, options: ConnectionOptions) -> None:
        self.options = options
        self._default_model: str | None = None

    def call(
        self,
        method: str,
        request: Any,
        parse: Callable[[Any], R],
        *,
        timeout_s: float | None,
        request_id: str | None,
        service: Service = "classifier",
    ) -> UnaryCall[R]:
        """A unary call with its deadline (None: the client's default) and request id."""
        chosen_id = new_request_id(request_id)
        return UnaryCall(
            service=service,
            method=method,
            request=request,
            parse=parse,
            timeout_s=self.options.deadline_s(timeout_s),
            metadata=self.options.metadata(chosen_id),
            request_id=chosen_id,
        )

    # The model a call names: the one asked for, else the server's only model, which
    # costs a ListModels call the first time (made by the client, its own way).

    def known_model(self, model: str) -> str | None:
        """The model to use, or None when the server must be asked for its only one."""
        return model or self._default_model

    def only_model(self, models: list[ModelInfo]) -> str:
        """Remembers and returns the server's only model; InvalidInputError when it has more."""
        names = [info.name for info in models]
        if len(names) != 1:
            raise InvalidInputError(
                f"the server serves {len(names)} models ({', '.join(names)}); name one"
            )
        self._default_model = names[0]
        return names[0]

    def classify_audio(
        self,
        audio: AudioInput,
        *,
        sample_rate_hz: int | None,
        encoding: str | None,
        channels: int | None,
        hop_ms: int,
        top_k: int,
    ) -> WireAudio:
        """The clip ready to send, checked (local problems raise InvalidInputError)."""
        check_window_options(hop_ms, top_k)
        return clip_audio(
            audio, sample_rate_hz=sample_rate_hz, encoding=encoding, channels=channels
        )

    def classify(
        self,
        wire: WireAudio,
        *,
        model: str,
        version: str,
        hop_ms: int,
        top_k: int,
        include_embedding: bool,
        timeout_s: float | None,
        request_id: str | None,
    ) -> UnaryCall[ClassifyResult]:
        """Classify, for a clip from `classify_audio`."""
        request = pb.ClassifyRequest(
            model=pb.ModelRef(name=model, version=version),
            format=wire.format,
            audio=wire.data,
            hop_ms=hop_ms,
            top_k=top_k,
            include_embedding=include_embedding,
        )
        return self.call(
            "Classify",
            request,
            classify_result_from_proto,
            timeout_s=timeout_s,
            request_id=request_id,
        )

    def models(self, timeout_s: float | None, request_id: str | None) -> UnaryCall[list[ModelInfo]]:
        """ListModels."""
        return self.call(
            "ListModels",
            pb.ListModelsRequest(),
            lambda response: [model_info_from_proto(info) for info in response.models],
            timeout_s=timeout_s,
            request_id=request_id,
        )

    def model(
        self, name: str, version: str, timeout_s: float | None, request_id: str | None
    ) -> UnaryCall[ModelInfo]:
        """GetModel."""
        request = pb.GetModelRequest(model=pb.ModelRef(name=name, version=version))
        return self.call(
            "GetModel", request, model_info_from_proto, timeout_s=timeout_s, request_id=request_id
        )

    def model_status(
        self, timeout_s: float | None, request_id: str | None
    ) -> UnaryCall[list[ModelStatus]]:
        """ListModelStatus."""
        return self.call(
            "ListModelStatus",
            pb.ListModelStatusRequest(),
            model_statuses_from_proto,
            timeout_s=timeout_s,
            request_id=request_id,
        )

    def load_model(
        self, name: str, reload: bool, timeout_s: float | None, request_id: str | None
    ) -> UnaryCall[ModelStatus]:
        """LoadModel."""
        return self.call(
            "LoadModel",
            load_model_request(name, reload),
            model_status_from_proto,
            timeout_s=timeout_s,
            request_id=request_id,
        )

    def unload_model(
        self, name: str, timeout_s: float | None, request_id: str | None
    ) -> UnaryCall[ModelStatus]:
        """UnloadModel."""
        return self.call(
            "UnloadModel",
            unload_model_request(name),
            model_status_from_proto,
            timeout_s=timeout_s,
            request_id=request_id,
        )

    def rollout_status(
        self, name: str, timeout_s: float | None, request_id: str | None
    ) -> UnaryCall[RolloutStatus]:
        """GetRollout."""
        return self.call(
            "GetRollout",
            get_rollout_request(name),
            rollout_status_from_proto,
            timeout_s=timeout_s,
            request_id=request_id,
        )

    def set_rollout(
        self,
        name: str,
        weights: Mapping[str, int] | None,
        policy: dict[str, Any],
        timeout_s: float | None,
        request_id: str | None,
    ) -> UnaryCall[RolloutStatus]:
        """SetRollout."""
        return self.call(
            "SetRollout",
            set_rollout_request(name, weights, **policy),
            rollout_status_from_proto,
            timeout_s=timeout_s,
            request_id=request_id,
        )

    def health(
        self, service: str, timeout_s: float | None, request_id: str | None
    ) -> UnaryCall[HealthStatus]:
        """grpc.health.v1.Health/Check."""
        return self.call(
            "Check",
            health_pb2.HealthCheckRequest(service=service),
            lambda response: HealthStatus(service, serving_status_from_proto(response.status)),
            timeout_s=timeout_s,
            request_id=request_id,
            service="health",
        )


def clip_from_stream(
    results: list[StreamResult], model: str, version: str, request_id: str
) -> ClassifyResult:
    """A streamed clip's results in Classify's shape (`classify_large`).

    Raises:
        ResourceExhaustedError: the server dropped a window (a RESOURCE_EXHAUSTED
            notice), so the clip's result would be incomplete.
    """
    windows = tuple(r for r in results if isinstance(r, WindowResult))
    summaries = [r for r in results if isinstance(r, Summary)]
    for notice in (r for r in results if isinstance(r, StreamNotice)):
        raise ResourceExhaustedError(
            f"the server dropped a window of the clip ({notice.code}: {notice.message}); "
            "retry later",
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            request_id,
        )
    if not summaries:
        raise InvalidInputError("the stream ended without a summary")
    summary = summaries[-1]
    first = windows[0] if windows else None
    return ClassifyResult(
        model_name=first.model_name if first else model,
        model_version=first.model_version if first else version,
        labels=summary.labels,
        windows=windows,
        summary=summary,
        request_id=summary.request_id or request_id,
    )
