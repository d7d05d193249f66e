"""The call envelope of every served RPC: request id, refusal while draining, bearer auth,
domain-error mapping, logs and request metrics."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from mozart_server.api.auth import check_bearer_token
from mozart_server.api.health import ServingState
from mozart_server.errors import INTERNAL_MESSAGE, MozartError, UnavailableError
from mozart_server.observability.context import CallLabels, call_labels_var
from mozart_server.observability.logs import request_id_var
from mozart_server.observability.metrics import ServerMetrics

logger = logging.getLogger(__name__)

REQUEST_ID_METADATA = "x-request-id"

if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


# The v2 protocol's own probes answer while models load or the server drains, as
# Triton's do: live=true, ready=false. Refusing them would read as "dead".
PROBE_METHODS = frozenset(
    f"/inference.GRPCInferenceService/{name}"
    for name in ("ServerLive", "ServerReady", "ModelReady")
)
# Model control answers as soon as start-up loading is done, even with no model serving:
# in explicit mode, loading the first model is how a server gets one.
CONTROL_METHODS = frozenset(
    [f"/inference.GRPCInferenceService/{name}"
     for name in ("RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload")]
    + [f"/mozart.v1.AudioClassifier/{name}"
       for name in ("ListModelStatus", "LoadModel", "UnloadModel")]
)  # fmt: skip


class ServingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps the handlers of the guarded services; health and reflection pass through."""

    def __init__(
        self,
        metrics: ServerMetrics,
        state: ServingState,
        guarded_services: Sequence[str],
        auth_token: str | None,
    ) -> None:
        self._metrics = metrics
        self._state = state
        self._prefixes = tuple(f"/{name}/" for name in guarded_services)
        self._auth_token = auth_token

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        """Returns the handler wrapped in the call envelope."""
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(self._prefixes):
            return handler
        metadata = handler_call_details.invocation_metadata
        short_method = method.rsplit("/", 1)[-1]
        kinds = (
            ("unary_unary", grpc.unary_unary_rpc_method_handler),
            ("unary_stream", grpc.unary_stream_rpc_method_handler),
            ("stream_unary", grpc.stream_unary_rpc_method_handler),
            ("stream_stream", grpc.stream_stream_rpc_method_handler),
        )
        for attribute, make_handler in kinds:
            behavior = getattr(handler, attribute)
            if behavior is not None:
                wrapped = self._wrap(short_method, metadata, behavior, method)
                return make_handler(
                    wrapped,
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler

    def _wrap(self, method: str, metadata: Any, behavior: Any, full_method: str) -> Any:
        if inspect.isasyncgenfunction(behavior):

            async def generator(request: Any, context: Context) -> AsyncIterator[Any]:
                call = _Call(self, method, metadata, context, full_method)
                try:
                    call.admit()
                    async for response in behavior(request, context):
                        yield response
                except BaseException as error:
                    await call.fail(error)
                finally:
                    call.finish()

            return generator

        async def unary(request: Any, context: Context) -> Any:
            call = _Call(self, method, metadata, context, full_method)
            try:
                call.admit()
                return await behavior(request, context)
            except BaseException as error:
                await call.fail(error)
            finally:
                call.finish()

        return unary


class _Call:
    """Per-call bookkeeping of the envelope."""

    def __init__(
        self,
        interceptor: ServingInterceptor,
        method: str,
        metadata: Any,
        context: Context,
        full_method: str,
    ) -> None:
        self._interceptor = interceptor
        self._full_method = full_method
        self._method = method
        self._metadata = metadata
        self._context = context
        self._started = time.monotonic()
        self.code = grpc.StatusCode.OK
        request_id = dict(metadata or ()).get(REQUEST_ID_METADATA) or uuid.uuid4().hex
        self._labels = CallLabels()
        # gRPC runs each call in its own task: these settings stay local to this call.
        request_id_var.set(str(request_id))
        call_labels_var.set(self._labels)

    def admit(self) -> None:
        state = self._interceptor._state
        if self._full_method not in PROBE_METHODS:
            if state.draining.is_set():
                raise UnavailableError(
                    "the server is draining for shutdown; retry on another replica"
                )
            if not state.started:
                raise UnavailableError("the server is not ready yet (models are loading)")
            if not state.has_models and self._full_method not in CONTROL_METHODS:
                raise UnavailableError(
                    "the server is not ready: no model is loaded (see ListModelStatus)"
                )
        token = self._interceptor._auth_token
        if token is not None:
            check_bearer_token(self._metadata, token)

    async def fail(self, error: BaseException) -> None:
        if isinstance(error, MozartError):
            self.code = error.status_code
            logger.info(
                "call refused", extra={"method": self._method, "code": self.code.name,
                                       "reason": error.message},
            )  # fmt: skip
            await self._context.abort(error.status_code, error.message)
        if isinstance(error, asyncio.CancelledError):
            self.code = grpc.StatusCode.CANCELLED
            raise error
        if isinstance(error, grpc.aio.AbortError) or not isinstance(error, Exception):
            self.code = self._context.code() or grpc.StatusCode.UNKNOWN
            raise error
        self.code = grpc.StatusCode.INTERNAL
        logger.error("call failed", exc_info=error, extra={"method": self._method})
        await self._context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)

    def finish(self) -> None:
        metrics = self._interceptor._metrics
        metrics.requests.labels(
            method=self._method,
            code=self.code.name,
            model=self._labels.model,
            version=self._labels.version,
        ).inc()
        metrics.request_duration.labels(method=self._method).observe(
            time.monotonic() - self._started
        )


def deadline_of(context: Context) -> float | None:
    """The call's deadline on the monotonic clock, or None."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining
