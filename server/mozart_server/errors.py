"""Typed domain errors, each carrying its gRPC status (see the proto's error contract)."""

from __future__ import annotations

from typing import ClassVar

import grpc


class MozartError(Exception):
    """A failure the caller can act on; the message is sent to the client as is."""

    status_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgumentError(MozartError):
    """Bad configuration or undecodable audio."""

    status_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(MozartError):
    """The model or version is not loaded."""

    status_code = grpc.StatusCode.NOT_FOUND


class OutOfRangeError(MozartError):
    """A clip or stream longer than max_stream_duration_s."""

    status_code = grpc.StatusCode.OUT_OF_RANGE


class ResourceExhaustedError(MozartError):
    """The batcher's queue is full."""

    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class RateLimitedError(ResourceExhaustedError):
    """A client went over one of its rate limits; the answer says when to retry."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class FailedPreconditionError(MozartError):
    """The server is not in a state that allows the call (e.g. model control is off)."""

    status_code = grpc.StatusCode.FAILED_PRECONDITION


class UnauthenticatedError(MozartError):
    """A missing or wrong bearer token."""

    status_code = grpc.StatusCode.UNAUTHENTICATED


class UnavailableError(MozartError):
    """The server is not ready yet or is draining."""

    status_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(MozartError):
    """The caller's deadline passed before compute."""

    status_code = grpc.StatusCode.DEADLINE_EXCEEDED


DEADLINE_SLACK_S = 0.1
"""How close to the server's copy of a deadline a client's cancel counts as that deadline.

The server's deadline starts when the call's headers arrive, later than the client's by the
time to send them (on a new channel, the connection's setup too). A client's library cancels
the call at its own deadline, so the cancel can arrive before the server's timer fires: a
cancel this close to the deadline is the deadline passing, not the client changing its mind.
"""


class NonFiniteScoresError(MozartError):
    """The model returned NaN or infinite scores: a server fault, never an answer."""

    status_code = grpc.StatusCode.INTERNAL

    def __init__(self) -> None:
        super().__init__(
            "the model returned non-finite scores for this audio; see the server log "
            "for this request id"
        )


class StartupError(Exception):
    """The server cannot start with these settings; the message names them."""


class ModelLoadError(Exception):
    """A model version that cannot serve; the reason is reported, the server goes on."""


INTERNAL_MESSAGE = "internal server error; see the server log for this request id"
