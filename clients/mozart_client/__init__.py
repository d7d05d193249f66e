"""Mozart Python SDK: classify clips and stream live audio to a Mozart server.

The public API is the names below. Modules whose names start with `_` (the core
that `Client` and `AsyncClient` share, proto conversion, stream plumbing,
resampling) are implementation details and may change.

Example:
    >>> from mozart_client import Client
    >>> with Client("localhost:8001") as client:
    ...     for result in client.stream("song.wav", realtime=True):
    ...         print(result)
"""

from mozart_client.aio import AsyncClient
from mozart_client.client import Client
from mozart_client.connection import ConnectionOptions, RetryPolicy, TlsConfig
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
from mozart_client.microphone import microphone_chunks
from mozart_client.results import (
    ClassifyResult,
    HealthStatus,
    LabelScore,
    ModelInfo,
    ModelStatus,
    ServingStatus,
    StreamNotice,
    StreamResult,
    Summary,
    VersionState,
    VersionStatus,
    WindowResult,
)

__all__ = [
    "AsyncClient",
    "CancelledError",
    "ClassifyResult",
    "Client",
    "ConnectionOptions",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "HealthStatus",
    "InvalidInputError",
    "LabelScore",
    "ModelInfo",
    "ModelStatus",
    "MozartError",
    "NotFoundError",
    "OutOfRangeError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "ServerError",
    "ServingStatus",
    "StreamNotice",
    "StreamResult",
    "Summary",
    "TlsConfig",
    "UnauthenticatedError",
    "UnavailableError",
    "VersionState",
    "VersionStatus",
    "WindowResult",
    "microphone_chunks",
]
