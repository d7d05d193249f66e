"""SDK exceptions: every `grpc.RpcError` becomes one of these at a single boundary."""

from __future__ import annotations

from typing import Any

import grpc

#: The metadata key of a call's request id, sent by the SDK and returned by the server.
REQUEST_ID_METADATA = "x-request-id"


class MozartError(Exception):
    """Base class of every error the SDK raises.

    Attributes:
        code: The gRPC status of the failed call, or None for errors raised
            before any call was made (for example an unreadable local file).
        details: The server's message, or the SDK's own for local errors.
        request_id: The id the server logged the call under (its trailing
            `x-request-id`, else the one the SDK sent); quote it when reporting
            an INTERNAL error. Empty for errors raised before any call.
    """

    def __init__(
        self, details: str, code: grpc.StatusCode | None = None, request_id: str = ""
    ) -> None:
        super().__init__(details)
        self.details = details
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        if self.code is None:
            return self.details
        return f"{self.code.name}: {self.details}"


class UnavailableError(MozartError):
    """The server cannot be reached, is still loading models, or is draining."""


class UnauthenticatedError(MozartError):
    """The server wants a bearer token and the call carried none, or a wrong one."""


class InvalidInputError(MozartError):
    """The audio or the options were rejected (INVALID_ARGUMENT), or never sent."""


class OutOfRangeError(InvalidInputError):
    """The clip or stream is longer than the server allows."""


class NotFoundError(MozartError):
    """The model, or the requested version of it, is not loaded."""


class FailedPreconditionError(MozartError):
    """The server is not in a state to do this (FAILED_PRECONDITION).

    Model control raises it when the server does not run with
    `model_control_mode=explicit`, and when a load finds no version that loads.
    """


class ResourceExhaustedError(MozartError):
    """The server's queue is full or the caller is rate limited; retry later."""


class DeadlineExceededError(MozartError):
    """The call's deadline passed before the server answered."""


class CancelledError(MozartError):
    """The call was cancelled, by this client or by the server."""


class ServerError(MozartError):
    """A server fault (INTERNAL, UNKNOWN, UNIMPLEMENTED, ...)."""


_ERROR_BY_CODE: dict[grpc.StatusCode, type[MozartError]] = {
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: UnauthenticatedError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInputError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.CANCELLED: CancelledError,
}


def from_rpc_error(error: grpc.RpcError, request_id: str = "") -> MozartError:
    """Turns a failed gRPC call into the SDK exception for its status code.

    Args:
        error: The exception grpc raised; sync and asyncio calls both raise
            objects that carry ``code()``, ``details()`` and ``trailing_metadata()``.
        request_id: The id the call was sent with, for when the server's answer
            carries none (e.g. it was never reached).

    Returns:
        The matching MozartError subclass, keeping the status code, message and request id.
    """
    code_of = getattr(error, "code", None)
    details_of = getattr(error, "details", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    details = details_of() if callable(details_of) else None
    error_type = _ERROR_BY_CODE.get(code, ServerError)
    answered = request_id_of(getattr(error, "trailing_metadata", None))
    return error_type(details or code.name.lower(), code, answered or request_id)


def request_id_of(trailing_metadata: object) -> str:
    """The `x-request-id` of a call's trailing metadata ("" when it has none).

    Args:
        trailing_metadata: The call's ``trailing_metadata`` method (sync calls and
            errors), or what it returned (a sequence of key-value pairs), or None.
    """
    pairs: Any = trailing_metadata() if callable(trailing_metadata) else trailing_metadata
    for key, value in pairs or ():
        if key == REQUEST_ID_METADATA:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return ""
