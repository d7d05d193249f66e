"""One error shape for the HTTP API: gRPC status names mapped to HTTP statuses.

Mozart's own endpoints answer `{"error": {"code", "message", "request_id"}}`; the
Open Inference Protocol endpoints (/v2) answer its `{"error": "<message>"}`. Both carry
the same HTTP status for the same gRPC status, and `x-request-id` in a header.
"""

from __future__ import annotations

import math
from typing import Any

import grpc
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from mozart_server.errors import MozartError, RateLimitedError

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.ABORTED: 409,
}
#: HTTP statuses that Starlette raises itself (unknown route, wrong method, ...).
GRPC_STATUS: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
V2_PREFIX = "/v2"
REQUEST_ID_HEADER = "x-request-id"


class ErrorDetail(BaseModel):
    """What went wrong, as the gRPC API would say it."""

    code: str = Field(description="The gRPC status name, e.g. INVALID_ARGUMENT.")
    message: str = Field(description="What was wrong, for a person to read.")
    request_id: str = Field(description="The id the server's logs name this call by.")


class ErrorBody(BaseModel):
    """The error answer of Mozart's own endpoints."""

    error: ErrorDetail


class V2ErrorBody(BaseModel):
    """The error answer of the Open Inference Protocol endpoints."""

    error: str = Field(description="What was wrong.")


def documented_errors(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses, with the error shape `model`."""
    statuses = {
        400: "INVALID_ARGUMENT, OUT_OF_RANGE", 401: "UNAUTHENTICATED", 404: "NOT_FOUND",
        409: "FAILED_PRECONDITION", 413: "RESOURCE_EXHAUSTED: the body exceeds max_message_bytes",
        429: "RESOURCE_EXHAUSTED (Retry-After)", 500: "INTERNAL", 503: "UNAVAILABLE",
    }  # fmt: skip
    return {status: {"description": text, "model": model} for status, text in statuses.items()}


class PayloadTooLargeError(MozartError):
    """A request body over max_message_bytes: RESOURCE_EXHAUSTED, answered HTTP 413."""

    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status that stands for a gRPC status."""
    return HTTP_STATUS.get(code, 500)


def error_response(
    path: str,
    code: grpc.StatusCode,
    message: str,
    request_id: str,
    error: BaseException | None = None,
) -> JSONResponse:
    """The error answer of a call to `path`, in the shape its API documents."""
    status = 413 if isinstance(error, PayloadTooLargeError) else http_status(code)
    headers = {REQUEST_ID_HEADER: request_id} if request_id else {}
    if isinstance(error, RateLimitedError):
        headers["retry-after"] = str(max(1, math.ceil(error.retry_after_s)))
        headers["retry-after-ms"] = str(max(1, math.ceil(error.retry_after_s * 1000)))
    elif code is grpc.StatusCode.RESOURCE_EXHAUSTED and status == 429:
        headers["retry-after"] = "1"
    body: dict[str, Any]
    if path == V2_PREFIX or path.startswith(V2_PREFIX + "/"):
        body = {"error": message}
    else:
        body = {"error": {"code": code.name, "message": message, "request_id": request_id}}
    return JSONResponse(body, status_code=status, headers=headers)
