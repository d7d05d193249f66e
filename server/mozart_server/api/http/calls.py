"""Each HTTP call through the shared gate (`api/envelope.py`), and bounded body reads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
from starlette.datastructures import Address
from starlette.requests import HTTPConnection, Request

from mozart_server.api.auth import TokenRefusedError
from mozart_server.api.envelope import CallGate, GatedCall, Metadata
from mozart_server.api.rate_limits import client_address
from mozart_server.errors import INTERNAL_MESSAGE, MozartError, RateLimitedError
from mozart_server.observability.logs import clip_text

from .errors import PayloadTooLargeError

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 2000  # as long as a gRPC status message may be


class HttpCallError(Exception):
    """A call that ended with a gRPC status other than OK; rendered by the app's handler."""

    def __init__(
        self, code: grpc.StatusCode, message: str, request_id: str, cause: BaseException
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.cause = cause


def peer_address(client: Address | None) -> str:
    """The rate-limit key of an HTTP client, as gRPC's peers are keyed."""
    if client is None:
        return "unknown"
    host, port = client.host, client.port
    return client_address(f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}")


def failure(error: BaseException, call: GatedCall) -> HttpCallError:
    """Records why `call` failed and returns the error to answer it with."""
    if isinstance(error, MozartError):
        call.code = error.status_code
        message = clip_text(error.message, MAX_MESSAGE_CHARS)
        if not isinstance(error, (TokenRefusedError, RateLimitedError)):
            logger.info(
                "call refused",
                extra={"method": call.method, "code": call.code.name,
                       "reason": clip_text(error.message, 300)},
            )  # fmt: skip
        return HttpCallError(call.code, message, call.request_id, error)
    call.code = grpc.StatusCode.INTERNAL
    logger.error("call failed", exc_info=error, extra={"method": call.method})
    return HttpCallError(call.code, INTERNAL_MESSAGE, call.request_id, error)


class HttpGate:
    """Opens gated calls for HTTP requests."""

    def __init__(self, gate: CallGate, max_body_bytes: int) -> None:
        self.gate = gate
        self.max_body_bytes = max_body_bytes

    def open(
        self, connection: HTTPConnection, method: str, protocol: str, metadata: Metadata = ()
    ) -> GatedCall:
        """A call of `method` with the connection's headers (and `metadata` besides)."""
        return self.gate.call(method, protocol, [*connection.headers.items(), *metadata])

    @contextlib.asynccontextmanager
    async def call(
        self, request: Request, method: str, *, probe: bool = False, control: bool = False
    ) -> AsyncIterator[GatedCall]:
        """Admits the request as a call of `method`, records how it ended.

        Raises:
            HttpCallError: the call was refused or failed (its status and message).
        """
        call = self.open(request, method, "http")
        try:
            call.begin(lambda: peer_address(request.client), probe=probe, control=control)
            yield call
        except asyncio.CancelledError:
            call.code = grpc.StatusCode.CANCELLED
            raise
        except HttpCallError:
            raise
        except Exception as error:
            raise failure(error, call) from None
        finally:
            call.finish()

    async def read_body(self, request: Request, call: GatedCall, *, audio: bool = True) -> bytes:
        """The request body, refused once it passes max_message_bytes; `audio` counts it.

        Raises:
            PayloadTooLargeError: the body is larger than max_message_bytes.
            RateLimitedError: the client is over client_audio_s_per_s.
        """
        limit = self.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(
                f"the request body of {declared} bytes exceeds max_message_bytes ({limit})"
            )
        parts: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(
                    f"the request body exceeds max_message_bytes ({limit} bytes)"
                )
            parts.append(chunk)
        body = b"".join(parts)
        if audio:
            call.admit_audio(len(body))
        return body
