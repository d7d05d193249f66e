"""Counts the calls of the served APIs that are running, so shutdown waits for them and
no longer (health, reflection and refused calls pass by in no time)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import grpc


class InFlightCalls(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """The outermost interceptor: wraps each handler of the given services in a count."""

    def __init__(self, service_names: Sequence[str]) -> None:
        self._prefixes = tuple(f"/{name}/" for name in service_names)
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Waits until no call runs, for at most `timeout_s`; True if none does."""
        try:
            await asyncio.wait_for(self._idle.wait(), max(timeout_s, 0.0))
        except TimeoutError:
            return False
        return True

    @contextlib.contextmanager
    def _counted(self) -> Iterator[None]:
        self.count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        """Returns the handler, counted while it runs when it belongs to a served API."""
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(self._prefixes):
            return handler
        kinds = (
            ("unary_unary", grpc.unary_unary_rpc_method_handler),
            ("unary_stream", grpc.unary_stream_rpc_method_handler),
            ("stream_unary", grpc.stream_unary_rpc_method_handler),
            ("stream_stream", grpc.stream_stream_rpc_method_handler),
        )
        for attribute, make_handler in kinds:
            behavior = getattr(handler, attribute)
            if behavior is not None:
                return make_handler(
                    self._wrap(behavior),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler

    def _wrap(self, behavior: Any) -> Any:
        if inspect.isasyncgenfunction(behavior):

            async def generator(request: Any, context: Any) -> AsyncIterator[Any]:
                with self._counted():
                    async for response in behavior(request, context):
                        yield response

            return generator

        async def coroutine(request: Any, context: Any) -> Any:
            with self._counted():
                return await behavior(request, context)

        return coroutine
