"""The call envelope of every served RPC: request id, bearer auth, per-client rate limits,
refusal while draining, request parsing, domain-error mapping, logs and request metrics.
The rules themselves are the transport-neutral gate's (`envelope.py`, which the HTTP API
passes too); this module holds them to gRPC calls.

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
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

import grpc

from mozart_server.api.auth import BearerAuth, TokenRefusedError
from mozart_server.api.envelope import REQUEST_ID_HEADER, CallGate
from mozart_server.api.health import ServingState
from mozart_server.api.in_flight import InFlightCalls
from mozart_server.api.rate_limits import ClientLimits, client_address, retry_metadata
from mozart_server.errors import (
    DEADLINE_SLACK_S,
    INTERNAL_MESSAGE,
    InvalidArgumentError,
    MozartError,
    RateLimitedError,
)
from mozart_server.observability.logs import clip_text
from mozart_server.observability.metrics import ServerMetrics

logger = logging.getLogger(__name__)

REQUEST_ID_METADATA = REQUEST_ID_HEADER
# Longest status message sent back: a message may quote what the client sent, and
# gRPC clients refuse trailers beyond a few KB.
MAX_DETAILS_CHARS = 2000
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
        self._prefixes = tuple(f"/{name}/" for name in guarded_services)
        self._gate = CallGate(
            metrics, state, auth=auth, limits=limits, known_model=known_model, in_flight=in_flight
        )

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
    """Per-call bookkeeping of the envelope: the gate's rules (`api/envelope.py`), in gRPC."""

    def __init__(self, interceptor: ServingInterceptor, full_method: str, metadata: Any) -> None:
        self._gate = interceptor._gate
        self._full_method = full_method
        self._context: Context | None = None
        self._call = self._gate.call(full_method.rsplit("/", 1)[-1], "grpc", tuple(metadata or ()))
        self._trailing: tuple[tuple[str, str], ...] = ()

    @property
    def code(self) -> grpc.StatusCode:
        """The status the call ended with (OK until it fails)."""
        return self._call.code

    @code.setter
    def code(self, value: grpc.StatusCode) -> None:
        self._call.code = value

    def deserializer(self, parse: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
        """Parses each request message; counts it as audio; bad bytes are INVALID_ARGUMENT."""
        name = "request" if parse is None else _message_name(parse)
        counts_audio = self._gate.counts_audio and self._full_method in AUDIO_METHODS
        call = self._call

        def deserialize(raw: bytes) -> Any:
            if counts_audio:
                call.admit_audio(len(raw))
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
        self._context = context
        self._call.enter()
        # Every answer, OK or not, names the id its logs are under (abort keeps it too).
        self._trailing = ((REQUEST_ID_METADATA, self._call.request_id),)
        context.set_trailing_metadata(self._trailing)
        self._call.admit(
            # Only auth and rate limits need the peer's address (a string gRPC builds).
            lambda: client_address(context.peer()),
            probe=self._full_method in PROBE_METHODS,
            control=self._full_method in CONTROL_METHODS,
            peer_text=context.peer,
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
        method = self._call.method
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
                    extra={"method": method, "code": code.name,
                           "reason": clip_text(error.message, 300)},
                )  # fmt: skip
        else:
            code, details = grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
        try:
            await context.abort(code, details, self._trailing + trailing)
        except grpc.aio.AbortError:
            self.code = code
            if not isinstance(error, MozartError):
                logger.error("call failed", exc_info=error, extra={"method": method})
            raise
        except Exception:
            # The status could not be sent: the client is gone, and what failed in the
            # handler (a read that saw the end, a write) failed because of that.
            self.code = self._client_gone_code()
            logger.debug(
                "call ended by its client",
                extra={"method": method, "error": type(error).__name__},
            )
            raise asyncio.CancelledError() from None

    def finish(self) -> None:
        """Frees the client's call slot; records the call's outcome in the request metrics."""
        self._call.finish()


def deadline_of(context: Context) -> float | None:
    """The call's deadline on the monotonic clock, or None."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining
