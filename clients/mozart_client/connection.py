"""How the SDK reaches a server: TLS, bearer token, deadlines and the retry policy."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from mozart_client.errors import REQUEST_ID_METADATA, InvalidInputError

DEFAULT_TARGET = "localhost:8001"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
AUDIO_CLASSIFIER = "mozart.v1.AudioClassifier"
HEALTH = "grpc.health.v1.Health"

# Only calls that are safe to repeat are retried. A stream is never retried: its
# audio has been consumed and its results may already have reached the caller.
# LoadModel and UnloadModel change the server: a retried reload loads twice and a
# retried unload answers NOT_FOUND, so they are left to the caller.
IDEMPOTENT_METHODS: tuple[tuple[str, str], ...] = (
    (AUDIO_CLASSIFIER, "Classify"),
    (AUDIO_CLASSIFIER, "ListModels"),
    (AUDIO_CLASSIFIER, "GetModel"),
    (AUDIO_CLASSIFIER, "ListModelStatus"),
    (HEALTH, "Check"),
)


@dataclass(frozen=True)
class TlsConfig:
    """TLS settings; with no CA given, the system's trusted roots are used.

    Attributes:
        ca_cert: PEM file of the CA that signed the server's certificate.
        client_cert: PEM certificate chain for mutual TLS (needs client_key).
        client_key: PEM private key for mutual TLS (needs client_cert).
        server_name: Host name to check the server certificate against, when
            it differs from the host in the target (e.g. connecting by IP).
    """

    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        """Reads the PEM files and builds the channel credentials."""
        if (self.client_cert is None) != (self.client_key is None):
            raise InvalidInputError("mutual TLS needs both a client certificate and its key")
        return grpc.ssl_channel_credentials(
            root_certificates=_read_pem(self.ca_cert),
            private_key=_read_pem(self.client_key),
            certificate_chain=_read_pem(self.client_cert),
        )


def _read_pem(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise InvalidInputError(f"cannot read {path}: {error.strerror}") from error


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff on UNAVAILABLE for idempotent unary calls.

    gRPC applies it itself (service-config `retryPolicy`); it caps attempts at 5.
    """

    max_attempts: int = 5
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    backoff_multiplier: float = 2.0

    def service_config(self) -> str:
        """The channel's service config as JSON, or none when retries are off."""
        method_config: dict[str, Any] = {
            "name": [
                {"service": service, "method": method} for service, method in IDEMPOTENT_METHODS
            ]
        }
        if self.max_attempts > 1:
            method_config["retryPolicy"] = {
                "maxAttempts": self.max_attempts,
                "initialBackoff": f"{self.initial_backoff_s}s",
                "maxBackoff": f"{self.max_backoff_s}s",
                "backoffMultiplier": self.backoff_multiplier,
                "retryableStatusCodes": ["UNAVAILABLE"],
            }
        return json.dumps({"methodConfig": [method_config]})


@dataclass(frozen=True)
class ConnectionOptions:
    """Everything a Client or AsyncClient needs to reach a server.

    Attributes:
        target: `host:port` of the server.
        tls: TLS settings; None for a plaintext channel.
        token: Bearer token sent as `authorization: Bearer <token>` metadata.
        timeout_s: Default deadline of unary calls, in seconds; None for none.
        retry: Retry policy of idempotent unary calls.
        max_message_bytes: Largest message sent or received (whole clips); the
            server has its own limit (`max_message_bytes`, 64 MiB by default).
    """

    target: str = DEFAULT_TARGET
    tls: TlsConfig | None = None
    token: str | None = None
    timeout_s: float | None = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def __post_init__(self) -> None:
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise InvalidInputError(f"timeout_s must be positive or None, got {self.timeout_s}")
        if self.max_message_bytes <= 0:
            raise InvalidInputError(
                f"max_message_bytes must be positive, got {self.max_message_bytes}"
            )

    def channel_options(self) -> list[tuple[str, Any]]:
        """The gRPC channel arguments: retry policy, message limits, TLS name."""
        options: list[tuple[str, Any]] = [
            ("grpc.service_config", self.retry.service_config()),
            ("grpc.enable_retries", 1 if self.retry.max_attempts > 1 else 0),
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
        ]
        if self.tls is not None and self.tls.server_name:
            options.append(("grpc.ssl_target_name_override", self.tls.server_name))
        return options

    def deadline_s(self, timeout_s: float | None) -> float | None:
        """A unary call's deadline: `timeout_s`, else the default; math.inf for none."""
        chosen = self.timeout_s if timeout_s is None else timeout_s
        if chosen is not None and not chosen > 0:
            raise InvalidInputError(f"timeout_s must be positive, got {chosen}")
        return None if chosen is None or chosen == float("inf") else chosen

    def metadata(self, request_id: str) -> tuple[tuple[str, str], ...]:
        """Call metadata: the request id, and the bearer token when there is one."""
        if not self.token:
            return ((REQUEST_ID_METADATA, request_id),)
        return ((REQUEST_ID_METADATA, request_id), ("authorization", f"Bearer {self.token}"))


def new_request_id(request_id: str | None = None) -> str:
    """The id a call is sent under: the caller's, or a new uuid4 in hex."""
    if request_id is None:
        return uuid.uuid4().hex
    if not request_id or not request_id.isascii() or not request_id.isprintable():
        raise InvalidInputError(f"request_id must be printable ASCII, got {request_id!r}")
    return request_id


def open_channel(options: ConnectionOptions) -> grpc.Channel:
    """Opens a blocking channel with the given options."""
    if options.tls is None:
        return grpc.insecure_channel(options.target, options=options.channel_options())
    return grpc.secure_channel(
        options.target, options.tls.credentials(), options=options.channel_options()
    )


def open_aio_channel(options: ConnectionOptions) -> grpc.aio.Channel:
    """Opens an asyncio channel with the given options."""
    if options.tls is None:
        return grpc.aio.insecure_channel(options.target, options=options.channel_options())
    return grpc.aio.secure_channel(
        options.target, options.tls.credentials(), options=options.channel_options()
    )
