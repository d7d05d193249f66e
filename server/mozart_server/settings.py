"""The server's settings: one pydantic-settings model, from flags, `MOZART_` variables or a file."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_FILE_VARIABLE = "MOZART_CONFIG_FILE"


class VersionPolicy(StrEnum):
    """Which versions of each model the server loads (Triton's version_policy)."""

    LATEST = "latest"
    ALL = "all"
    SPECIFIC = "specific"


class GraphOptimizationLevel(StrEnum):
    """ONNX Runtime graph optimization levels."""

    DISABLE = "disable"
    BASIC = "basic"
    EXTENDED = "extended"
    ALL = "all"


class ProviderMismatch(StrEnum):
    """What to do when ONNX Runtime runs another provider than the one asked for."""

    FAIL = "fail"
    WARN = "warn"


class ServerSettings(BaseSettings):
    """Every knob of `mozart serve`. Units are in the names."""

    model_config = SettingsConfigDict(
        env_prefix="MOZART_", extra="forbid", frozen=True, validate_default=True
    )

    # Network.
    host: str = Field(default="127.0.0.1", description="Address the gRPC server binds.")
    port: int = Field(default=8001, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    metrics_host: str = Field(
        default="127.0.0.1", description="Address the /metrics HTTP server binds."
    )
    metrics_port: int = Field(
        default=8002, ge=0, le=65535, description="Prometheus /metrics port; 0 picks a free one."
    )
    max_message_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Largest gRPC message the server accepts."
    )
    auth_token: str | None = Field(
        default=None, description="When set, every call needs `authorization: Bearer <token>`."
    )
    tls_cert_file: Path | None = Field(
        default=None, description="PEM server certificate; enables TLS."
    )
    tls_key_file: Path | None = Field(default=None, description="PEM private key of tls_cert_file.")
    tls_client_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle; when set, clients must present a certificate (mTLS).",
    )

    # Models.
    model_repository: Path = Field(
        default=Path("models"), description="Folder of <name>/<version>/."
    )
    version_policy: VersionPolicy = Field(
        default=VersionPolicy.LATEST, description="latest, all, specific."
    )
    latest_versions: int = Field(
        default=1, ge=1, description="How many newest versions `latest` loads."
    )
    specific_versions: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Versions `specific` loads (comma-separated)."
    )

    # Engine (ONNX Runtime).
    providers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="ONNX Runtime execution providers, in priority order (comma-separated).",
    )
    on_provider_mismatch: ProviderMismatch = Field(
        default=ProviderMismatch.FAIL,
        description="fail or warn when ONNX Runtime falls back from the first provider asked for.",
    )
    instances: int = Field(
        default=1, ge=1, le=64, description="Sessions per model version (parallel batches)."
    )
    intra_op_threads: int = Field(
        default=1, ge=0, description="ORT intra-op threads; 0 lets ORT choose."
    )
    inter_op_threads: int = Field(
        default=1, ge=0, description="ORT inter-op threads; 0 lets ORT choose."
    )
    allow_spinning: bool = Field(
        default=False,
        description="Let ORT threads spin while waiting (burns CPU on small machines).",
    )
    graph_optimization_level: GraphOptimizationLevel = Field(
        default=GraphOptimizationLevel.ALL, description="ORT graph optimization level."
    )

    # Dynamic batcher.
    max_batch_size: int = Field(default=16, ge=1, le=4096, description="Most windows in one batch.")
    max_queue_delay_us: int = Field(
        default=0, ge=0, le=1_000_000, description="How long a batch may wait to fill up."
    )
    preferred_batch_sizes: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [1, 4, 8, 16],
        description="Batch sizes to warm up and to stop waiting at (comma-separated).",
    )
    max_queue_windows: int = Field(
        default=1024,
        ge=1,
        description="Most windows queued per model version; more is RESOURCE_EXHAUSTED.",
    )

    # Requests and streams.
    default_top_k: int = Field(
        default=5, ge=1, description="Labels per result when a request asks for 0."
    )
    max_stream_duration_s: float = Field(
        default=3600.0,
        gt=0,
        description="Longest stream or clip, in seconds of audio (OUT_OF_RANGE).",
    )
    stream_idle_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest wait for the next stream message (INVALID_ARGUMENT).",
    )
    max_chunk_bytes: int = Field(
        default=1024 * 1024, ge=1, description="Largest audio chunk in one stream message."
    )
    max_windows_in_flight_per_stream: int = Field(
        default=8,
        ge=1,
        description="Windows one stream may have queued or computing before reads pause.",
    )

    # Lifecycle and logs.
    shutdown_grace_s: float = Field(
        default=10.0, ge=0, description="How long in-flight work may finish after SIGTERM."
    )
    log_level: str = Field(default="INFO", description="Python logging level name.")

    @field_validator("providers", "specific_versions", "preferred_batch_sizes", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        # Flags and environment variables give lists as "a,b,c".
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(
                f"log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL: {value!r}"
            )
        return level

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.providers:
            raise ValueError("providers must name at least one ONNX Runtime provider")
        if any(size < 1 or size > self.max_batch_size for size in self.preferred_batch_sizes):
            raise ValueError(
                f"preferred_batch_sizes must lie in 1..max_batch_size ({self.max_batch_size}): "
                f"{self.preferred_batch_sizes}"
            )
        if self.version_policy is VersionPolicy.SPECIFIC and not self.specific_versions:
            raise ValueError("version_policy=specific needs specific_versions")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags beat environment variables, which beat the optional TOML config file."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_VARIABLE)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)
