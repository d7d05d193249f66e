"""How the client commands report failures: exit codes, status names, hints, request ids."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import grpc

from mozart_client.errors import (
    CancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidInputError,
    MozartError,
    NotFoundError,
    OutOfRangeError,
    ResourceExhaustedError,
    ServerError,
    UnauthenticatedError,
    UnavailableError,
)


class ExitCode(IntEnum):
    """Exit codes of the client commands, one per failure class (docs/cli.md)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    UNREACHABLE = 3
    UNAUTHENTICATED = 4
    INVALID_INPUT = 5
    NOT_FOUND = 6
    DEADLINE_EXCEEDED = 7
    RESOURCE_EXHAUSTED = 8
    SERVER_ERROR = 9
    NOT_SERVING = 10
    FAILED_PRECONDITION = 11
    INTERRUPTED = 130


_EXIT_BY_ERROR: tuple[tuple[type[MozartError], ExitCode], ...] = (
    (UnavailableError, ExitCode.UNREACHABLE),
    (UnauthenticatedError, ExitCode.UNAUTHENTICATED),
    (InvalidInputError, ExitCode.INVALID_INPUT),
    (NotFoundError, ExitCode.NOT_FOUND),
    (DeadlineExceededError, ExitCode.DEADLINE_EXCEEDED),
    (ResourceExhaustedError, ExitCode.RESOURCE_EXHAUSTED),
    (FailedPreconditionError, ExitCode.FAILED_PRECONDITION),
    (ServerError, ExitCode.SERVER_ERROR),
)

# The status an error raised before any call (code None) stands for; most specific first.
_STATUS_BY_ERROR: tuple[tuple[type[MozartError], grpc.StatusCode], ...] = (
    (OutOfRangeError, grpc.StatusCode.OUT_OF_RANGE),
    (InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (CancelledError, grpc.StatusCode.CANCELLED),
)


def exit_code_for(error: MozartError) -> ExitCode:
    """The exit code of a failure class."""
    for error_type, code in _EXIT_BY_ERROR:
        if isinstance(error, error_type):
            return code
    return ExitCode.FAILURE


def status_of(error: MozartError) -> grpc.StatusCode:
    """The gRPC status of an error; errors raised before any call get their class's status.

    An unreadable file is INVALID_ARGUMENT, like audio the server rejects; an error of
    no class (a missing optional library) is FAILED_PRECONDITION.
    """
    if error.code is not None:
        return error.code
    for error_type, code in _STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return code
    return grpc.StatusCode.FAILED_PRECONDITION


def request_id_of(error: MozartError) -> str:
    """The id the server logged the failed call under, when the SDK has it."""
    return str(getattr(error, "request_id", "") or "")


def error_document(error: MozartError, **where: Any) -> dict[str, Any]:
    """A failure as one JSON object: where it happened, the message and the status name."""
    document: dict[str, Any] = {**where, "error": error.details, "code": status_of(error).name}
    request_id = request_id_of(error)
    if request_id:
        document["request_id"] = request_id
    return document


def message_lines(error: MozartError, *, tls: bool, prefix: str = "") -> list[str]:
    """What to print on stderr for an error: the error, a hint, the request id.

    Args:
        error: The failure.
        tls: Whether the channel used TLS (the hint depends on it).
        prefix: Where it happened, e.g. the file name.
    """
    head = f"{prefix}: " if prefix and prefix not in error.details else ""
    lines = [f"error: {head}{error}"]
    hint = connection_hint(error, tls=tls)
    if hint:
        lines.append(f"hint: {hint}")
    request_id = request_id_of(error)
    if request_id and status_of(error) in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        lines.append(f"request id: {request_id} (quote it to whoever runs the server)")
    return lines


def connection_hint(error: MozartError, *, tls: bool) -> str:
    """A likely cause of an UNAVAILABLE that reads like a TLS mismatch, or ""."""
    if not isinstance(error, UnavailableError):
        return ""
    details = error.details
    if not tls and "Socket closed" in details:
        return (
            "the server closed the connection at once; it may expect TLS: "
            "add --tls (or --ca-cert PEM), or use an https:// address"
        )
    if tls and "WRONG_VERSION_NUMBER" in details:
        return "the server does not seem to speak TLS: drop --tls/--ca-cert and https://"
    if tls and "CERTIFICATE_VERIFY_FAILED" in details:
        return (
            "the server's certificate is not signed by a CA this client trusts: "
            "pass its CA with --ca-cert PEM"
        )
    if tls and ("handshake" in details.lower() or "SSL" in details):
        return (
            "the TLS handshake failed: check --ca-cert, --server-name "
            "and, for mutual TLS, --client-cert/--client-key"
        )
    return ""
