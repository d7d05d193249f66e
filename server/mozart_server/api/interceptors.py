"""The call envelope of every served RPC: request id, bearer auth, per-client rate limits,
refusal while draining, request parsing, domain-error mapping, logs and request metrics.

Every guarded method is served by a request-streaming handler, the unary ones too, so
that the envelope runs before gRPC reads the request message: a call with a missing or
wrong token, over its rate limit, or arriving while the server drains, is refused
without its body being read or parsed. (gRPC has still taken in what the client sent
before the refusal, within HTTP/2 flow control.) A body that is not a valid protobuf
message is INVALID_ARGUMENT. A call whose client went away is counted as CANCELLED, or
DEADLINE_EXCEEDED when its deadline passed, whatever the handler was doing then.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

import grpc

from mozart_server.api.auth import BearerAuth, TokenRefusedError
from mozart_server.api.health import ServingState
from mozart_server.api.in_flight import InFlightCalls
from mozart_server.api.rate_limits import ClientLimits, client_address, retry_metadata
from mozart_server.errors import (
    DEADLINE_SLACK_S,
    INTERNAL_MESSAGE,
    InvalidArgumentError,
    MozartError,
    RateLimitedError,
    UnavailableError,
)
from mozart_server.observability.context import CallLabels, call_labels_var
from mozart_server.observability.logs import ThrottledLog, client_var, clip_text, request_id_var
from mozart_server.observability.metrics import LabelCache, ServerMetrics

logger = logging.getLogger(__name__)

REQUEST_ID_METADATA = "x-request-id"
# The model label of a call that named a model the server does not have: label values
# stay bounded whatever names clients send.
UNKNOWN_MODEL = "unknown"
# Longest status message sent back: a message may quote what the client sent, and
# gRPC clients refuse trailers beyond a few KB.
MAX_DETAILS_CHARS = 2000
MAX_REQUEST_ID_CHARS = 128
# grpc-stubs does not declare the end-of-stream marker of context.read().
EOF = grpc.aio.EOF  # type: ignore[attr-defined]

if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


# The v2 protocol's own probes answer while models load or the server drains, as
# Triton's do: live=true, ready=false. Refusing them would read as "dead". They need
# the token like every call, but no rate limit applies to them.
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
# Methods whose request bytes are audio, for client_audio_s_per_s.
AUDIO_METHODS = frozenset(
    ["/mozart.v1.AudioClassifier/Classify", "/mozart.v1.AudioClassifier/StreamClassify",
     "/inference.GRPCInferenceService/ModelInfer",
     "/inference.GRPCInferenceService/ModelStreamInfer"]
)  # fmt: skip


def _no_model(name: str) -> bool:
    return False


class ServingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps the handlers of the guarded services; health and reflection pass through."""

    def __init__(
        self,
        metrics: ServerMetrics,
        state: ServingState,
        guarded_services: Sequence[str],
        *,
        auth: BearerAuth | None = None,
        limits: ClientLimits | None = None,
        known_model: Callable[[str], bool] = _no_model,
        in_flight: InFlightCalls | None = None,
    ) -> None:
        """Args:
        metrics, state: the server's metrics and serving state.
        guarded_services: full names of the services behind the envelope.
        auth: bearer-token auth, or None when every call is accepted.
        limits: per-client rate limits, or None for none.
        known_model: whether a name is a model of the repository (for the model label
            of calls that name a model without resolving it, such as LoadModel).
        in_flight: counts every guarded call while it runs (shutdown waits for them).
        """
        self._metrics = metrics
        self._state = state
        self._prefixes = tuple(f"/{name}/" for name in guarded_services)
        self._auth = auth
        # Limits that are all off (the default) are none at all for the envelope.
        self._limits = limits if limits is not None and limits.active else None
        self._known_model = known_model
        self._in_flight = in_flight if in_flight is not None else InFlightCalls()
        self._auth_log = ThrottledLog(logger)
        # Every call records these two: look their children up once, not per call.
        self._requests = LabelCache(metrics.requests)
        self._request_duration = LabelCache(metrics.request_duration)
        self._limit_log = ThrottledLog(logger)

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
        call = _Call(self, method, handler_call_details.invocation_metadata)
        deserializer = call.deserializer(handler.request_deserializer)
        serializer = handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _unary_unary(call, handler.unary_unary), deserializer, serializer
            )
        if handler.unary_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _unary_stream(call, handler.unary_stream), deserializer, serializer
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _stream_unary(call, handler.stream_unary), deserializer, serializer
            )
        return grpc.stream_stream_rpc_method_handler(
            _stream_stream(call, handler.stream_stream), deserializer, serializer
        )


def _unary_unary(call: _Call, behavior: Any) -> Any:
    async def handle(requests: Any, context: Context) -> Any:
        try:
            call.begin(context)
            return await behavior(await call.read_one(), context)
        except BaseException as error:
            await call.fail(error)
        finally:
            call.finish()

    return handle


def _unary_stream(call: _Call, behavior: Any) -> Any:
    async def handle(requests: Any, context: Context) -> AsyncIterator[Any]:
        try:
            call.begin(context)
            async for response in behavior(await call.read_one(), context):
                yield response
        except BaseException as error:
            await call.fail(error)
        finally:
            call.finish()

    return handle


def _stream_unary(call: _Call, behavior: Any) -> Any:
    async def handle(requests: Any, context: Context) -> Any:
        try:
            call.begin(context)
            return await behavior(requests, context)
        except BaseException as error:
            await call.fail(error)
        finally:
            call.finish()

    return handle


def _stream_stream(call: _Call, behavior: Any) -> Any:
    if inspect.isasyncgenfunction(behavior):

        async def generate(requests: Any, context: Context) -> AsyncIterator[Any]:
            try:
                call.begin(context)
                async for response in behavior(requests, context):
                    yield response
            except BaseException as error:
                await call.fail(error)
            finally:
                call.finish()

        return generate

    async def handle(requests: Any, context: Context) -> None:
        try:
            call.begin(context)
            await behavior(requests, context)
        except BaseException as error:
            await call.fail(error)
        finally:
            call.finish()

    return handle


def _message_name(parse: Callable[[bytes], Any]) -> str:
    message_class = getattr(parse, "__self__", None)
    descriptor = getattr(message_class, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request"))


class _Call:
    """Per-call bookkeeping of the envelope."""

    def __init__(self, interceptor: ServingInterceptor, full_method: str, metadata: Any) -> None:
        self._interceptor = interceptor
        self._full_method = full_method
        self._method = full_method.rsplit("/", 1)[-1]
        self._metadata = tuple(metadata or ())
        self._context: Context | None = None
        self._started = time.monotonic()
        self._labels = CallLabels()
        self._client: str | None = None  # the token's name, with named tokens only
        self._holds_call_slot = False
        self._entered = False
        self._limit_key = ""
        self._trailing: tuple[tuple[str, str], ...] = ()
        self.code = grpc.StatusCode.OK

    def deserializer(self, parse: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
        """Parses each request message; counts it as audio; bad bytes are INVALID_ARGUMENT."""
        name = "request" if parse is None else _message_name(parse)
        limits = self._interceptor._limits
        counts_audio = (
            limits is not None and limits.counts_audio and self._full_method in AUDIO_METHODS
        )

        def deserialize(raw: bytes) -> Any:
            if counts_audio and limits is not None:
                try:
                    limits.admit_audio(self._limit_key, len(raw))
                except RateLimitedError:
                    self._count_rate_limited("audio")
                    raise
            if parse is None:
                return raw
            try:
                return parse(raw)
            except Exception:
                raise InvalidArgumentError(f"the request is not a valid {name} message") from None

        return deserialize

    def begin(self, context: Context) -> None:
        """Sets the call's context, then authenticates and admits it.

        Raises:
            MozartError: the call is refused (UNAUTHENTICATED, RESOURCE_EXHAUSTED,
                UNAVAILABLE).
        """
        self._interceptor._in_flight.enter()
        self._entered = True
        self._context = context
        request_id = dict(self._metadata).get(REQUEST_ID_METADATA) or os.urandom(16).hex()
        request_id = clip_text(str(request_id), MAX_REQUEST_ID_CHARS)
        # gRPC runs each call in its own task: these settings stay local to this call.
        request_id_var.set(request_id)
        # Every answer, OK or not, names the id its logs are under (abort keeps it too).
        self._trailing = ((REQUEST_ID_METADATA, request_id),)
        context.set_trailing_metadata(self._trailing)
        call_labels_var.set(self._labels)
        interceptor = self._interceptor
        if interceptor._auth is not None or interceptor._limits is not None:
            # Only auth and rate limits need the peer's address (a string gRPC builds).
            self._limit_key = client_address(context.peer())
        if interceptor._auth is not None:
            client = self._authenticate(interceptor._auth, self._limit_key)
            if interceptor._auth.named:
                self._client = client
                self._limit_key = f"client:{client}"
                client_var.set(client)
        state = interceptor._state
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
            if interceptor._limits is not None:
                try:
                    interceptor._limits.admit_call(self._limit_key)
                except RateLimitedError:
                    self._count_rate_limited("requests")
                    raise
                try:
                    interceptor._limits.open_call(self._limit_key)
                except RateLimitedError:
                    self._count_rate_limited("calls_in_flight")
                    raise
                self._holds_call_slot = True

    def _authenticate(self, auth: BearerAuth, address: str) -> str:
        metrics = self._interceptor._metrics
        try:
            return auth.identify(self._metadata)
        except TokenRefusedError as refused:
            peer = clip_text(self._context.peer() if self._context else "", 100)
            try:
                auth.throttle_failure(address)
            except RateLimitedError:
                metrics.auth_failures.labels(reason="throttled").inc()
                self._interceptor._auth_log.warning(
                    "authentication failed", method=self._method, peer=peer, reason="throttled"
                )
                raise
            metrics.auth_failures.labels(reason=refused.reason).inc()
            self._interceptor._auth_log.warning(
                "authentication failed", method=self._method, peer=peer, reason=refused.reason
            )
            raise

    def _count_rate_limited(self, limit: str) -> None:
        self._interceptor._metrics.rate_limited.labels(limit=limit, client=self._client or "").inc()
        self._interceptor._limit_log.warning(
            "rate limited", method=self._method, limit=limit, client=self._limit_key
        )

    async def read_one(self) -> Any:
        """The request message of a unary method, read only now that the call is admitted.

        Raises:
            InvalidArgumentError: no message came (the client went away or sent none).
        """
        assert self._context is not None
        request = await self._context.read()
        if request is EOF:
            raise InvalidArgumentError("the call carried no request message")
        return request

    def _client_gone_code(self) -> grpc.StatusCode:
        remaining = self._context.time_remaining() if self._context is not None else None
        if remaining is not None and remaining <= DEADLINE_SLACK_S:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED

    async def fail(self, error: BaseException) -> NoReturn:
        """Ends the call with the status `error` stands for, and records it."""
        context = self._context
        if isinstance(error, asyncio.CancelledError) or context is None:
            # The client cancelled, or its deadline passed (gRPC cancels the call then).
            self.code = self._client_gone_code()
            raise error
        if isinstance(error, grpc.aio.AbortError) or not isinstance(error, Exception):
            self.code = context.code() or grpc.StatusCode.UNKNOWN
            raise error
        trailing: tuple[tuple[str, str], ...] = ()
        if isinstance(error, MozartError):
            code, details = error.status_code, clip_text(error.message, MAX_DETAILS_CHARS)
            if isinstance(error, RateLimitedError):
                trailing = retry_metadata(error.retry_after_s)
            elif not isinstance(error, TokenRefusedError):
                logger.info(
                    "call refused",
                    extra={"method": self._method, "code": code.name,
                           "reason": clip_text(error.message, 300)},
                )  # fmt: skip
        else:
            code, details = grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
        try:
            await context.abort(code, details, self._trailing + trailing)
        except grpc.aio.AbortError:
            self.code = code
            if not isinstance(error, MozartError):
                logger.error("call failed", exc_info=error, extra={"method": self._method})
            raise
        except Exception:
            # The status could not be sent: the client is gone, and what failed in the
            # handler (a read that saw the end, a write) failed because of that.
            self.code = self._client_gone_code()
            logger.debug(
                "call ended by its client",
                extra={"method": self._method, "error": type(error).__name__},
            )
            raise asyncio.CancelledError() from None

    def _model_label(self) -> str:
        model, version = self._labels.model, self._labels.version
        if version:
            return model  # resolved to a loaded version: a name the server has
        if model:
            return model if self._interceptor._known_model(model) else UNKNOWN_MODEL
        return UNKNOWN_MODEL if self.code == grpc.StatusCode.NOT_FOUND else ""

    def finish(self) -> None:
        """Frees the client's call slot; records the call's outcome in the request metrics."""
        if self._entered:
            self._entered = False
            self._interceptor._in_flight.leave()
        limits = self._interceptor._limits
        if self._holds_call_slot and limits is not None:
            self._holds_call_slot = False
            limits.close_call(self._limit_key)
        interceptor = self._interceptor
        code = self.code.name
        interceptor._requests.get(
            self._method, code, self._model_label(), self._labels.version
        ).inc()
        interceptor._request_duration.get(self._method).observe(time.monotonic() - self._started)
        if self._client is not None:
            interceptor._metrics.client_requests.labels(client=self._client, code=code).inc()


def deadline_of(context: Context) -> float | None:
    """The call's deadline on the monotonic clock, or None."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining
