"""The server's settings: nested sections, read from flags, `MOZART_` variables or a TOML file.

Every setting has one flat name, unique across sections, that is its flag
(`--max-batch-size`), its environment variable (`MOZART_MAX_BATCH_SIZE`) and its
keyword (`ServerSettings(max_batch_size=8)`). In code it lives in its section
(`settings.batching.max_batch_size`), and in a TOML file either flat or under
`[batching]`.
"""

from __future__ import annotations

import os
import re
import ssl
import tomllib
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from mozart_server.cpus import UsableCpus, default_layout, usable_cpus
from mozart_server.env_aliases import alias_settings

CONFIG_FILE_VARIABLE = "MOZART_CONFIG_FILE"
ENV_PREFIX = "MOZART_"
AUTO = "auto"
# The default of the layout settings: a string where a number goes, until `_resolve_auto`
# replaces it (typed Any so that the fields keep the type engines read).
AUTO_DEFAULT: Any = AUTO
# Settings that may be `auto`, resolved from the usable CPUs when the settings are built.
LAYOUT_SETTINGS = ("instances", "intra_op_threads", "allow_spinning")
# Settings whose source the server logs at start ("engine layout chosen").
SOURCED_SETTINGS = (*LAYOUT_SETTINGS, "max_batch_size", "max_queue_delay_us",
                    "preferred_batch_sizes")  # fmt: skip


class VersionPolicy(StrEnum):
    """Which versions of each model the server loads (Triton's version_policy)."""

    LATEST = "latest"
    ALL = "all"
    SPECIFIC = "specific"


class ModelControlMode(StrEnum):
    """How the set of served models may change while the server runs (Triton's modes)."""

    NONE = "none"
    POLL = "poll"
    EXPLICIT = "explicit"


class Readiness(StrEnum):
    """When the server reports SERVING: some model serves, or every model named serves."""

    ANY = "any"
    ALL = "all"


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


class FloatSamples(StrEnum):
    """What happens to float samples beyond +-8 (refused, or every one clipped to [-1, 1])."""

    REJECT = "reject"
    CLIP = "clip"


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == AUTO


def _as_int(value: Any) -> int | None:
    # An explicit value the field will validate; one that is not a number is left to it.
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _split_commas(value: Any) -> Any:
    # Flags and environment variables give lists as "a,b,c".
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class NetworkSettings(_Section):
    """Where the server listens, and how large a message may be."""

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
        default=None,
        description="When set, every call needs `authorization: Bearer <token>`. As a flag it "
        "shows in `ps`: prefer MOZART_AUTH_TOKEN or auth_token_file.",
    )
    auth_token_file: Path | None = Field(
        default=None,
        description="File holding the bearer token (e.g. a mounted Kubernetes Secret); read "
        "at start, surrounding whitespace stripped.",
    )
    auth_tokens_file: Path | None = Field(
        default=None,
        description="File of named bearer tokens, one `name:token` a line (# starts a "
        "comment); logs, metrics and rate limits then name the client.",
    )
    auth_failures_per_s: float = Field(
        default=10.0,
        gt=0,
        description="Failed authentications one client address may make per second, on "
        "average; beyond that they are answered RESOURCE_EXHAUSTED.",
    )
    auth_failure_burst: int = Field(
        default=20, ge=1, description="Failed authentications one client address may make at once."
    )

    @field_validator("auth_token")
    @classmethod
    def _token_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(
                "auth_token is empty, which would accept an empty credential: set a token, or "
                "leave MOZART_AUTH_TOKEN unset to turn authentication off"
            )
        return None if value is None else value.strip()

    @field_validator("auth_token_file", "auth_tokens_file")
    @classmethod
    def _readable_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None:
            _read_setting_file(value, str(info.field_name))
        return value

    @model_validator(mode="after")
    def _one_token_source(self) -> Self:
        given = [name for name in ("auth_token", "auth_token_file", "auth_tokens_file")
                 if getattr(self, name) is not None]  # fmt: skip
        if len(given) > 1:
            raise ValueError(
                "set at most one of auth_token, auth_token_file and auth_tokens_file "
                f"(set: {', '.join(given)})"
            )
        self.bearer_tokens()  # a file that is empty or malformed stops start-up, named
        return self

    def bearer_tokens(self) -> dict[str, str] | None:
        """The bearer tokens the server accepts, by client name; None when auth is off.

        A single token (`auth_token`, `auth_token_file`) has the name "". The files are
        read on each call.

        Raises:
            ValueError: a token file is missing, unreadable, empty or malformed (the
                message names the setting).
        """
        if self.auth_token is not None:
            return {"": self.auth_token}
        if self.auth_token_file is not None:
            token = _read_setting_file(self.auth_token_file, "auth_token_file").strip()
            if not token:
                raise ValueError(f"auth_token_file {self.auth_token_file} is empty")
            return {"": token}
        if self.auth_tokens_file is not None:
            return _named_tokens(self.auth_tokens_file)
        return None


_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _read_setting_file(path: Path, setting: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise ValueError(f"{setting} {path} cannot be read: {reason}") from None


def _named_tokens(path: Path) -> dict[str, str]:
    tokens: dict[str, str] = {}
    lines = _read_setting_file(path, "auth_tokens_file").splitlines()
    for number, text in enumerate((line.strip() for line in lines), 1):
        if not text or text.startswith("#"):
            continue
        name, colon, token = (part.strip() for part in text.partition(":"))
        where = f"auth_tokens_file {path} line {number}"
        if not colon or not token:
            raise ValueError(f"{where}: expected name:token")
        if not _CLIENT_NAME.fullmatch(name):
            raise ValueError(f"{where}: a client name is 1 to 64 letters, digits, '_', '.' or '-'")
        if name in tokens:
            raise ValueError(f"{where}: client {name!r} is named twice")
        if token in tokens.values():
            raise ValueError(f"{where}: two clients share one token")
        tokens[name] = token
    if not tokens:
        raise ValueError(f"auth_tokens_file {path} names no client")
    return tokens


class HttpSettings(_Section):
    """The HTTP API (Open Inference Protocol v2 REST, Mozart REST, WebSocket streaming)."""

    http_enabled: bool = Field(
        default=True,
        description="Serve the HTTP API and the web page beside gRPC, in the same process.",
    )
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP API binds.")
    http_port: int = Field(
        default=8000, ge=0, le=65535, description="HTTP API port; 0 picks a free one."
    )
    http_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins browsers may call the HTTP API from (comma-separated; * is any); "
        "empty: no CORS headers.",
    )

    _lists = field_validator("http_cors_origins", mode="before")(_split_commas)


class TlsSettings(_Section):
    """Server TLS and, optionally, client certificates (mTLS)."""

    tls_cert_file: Path | None = Field(
        default=None, description="PEM server certificate; enables TLS."
    )
    tls_key_file: Path | None = Field(default=None, description="PEM private key of tls_cert_file.")
    tls_client_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle; when set, clients must present a certificate (mTLS).",
    )

    @field_validator("tls_cert_file", "tls_key_file", "tls_client_ca_file")
    @classmethod
    def _readable_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None:
            _read_setting_file(value, str(info.field_name))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        if self.tls_cert_file is not None and self.tls_key_file is not None:
            _check_certificate(self.tls_cert_file, self.tls_key_file, self.tls_client_ca_file)
        return self


def _check_certificate(cert_file: Path, key_file: Path, client_ca_file: Path | None) -> None:
    """Loads the PEM files as a TLS server would, so that a bad one is named at start."""
    if "-----BEGIN CERTIFICATE-----" not in _read_setting_file(cert_file, "tls_cert_file"):
        raise ValueError(f"tls_cert_file {cert_file} holds no PEM certificate")
    key_text = _read_setting_file(key_file, "tls_key_file")
    if "PRIVATE KEY-----" not in key_text:
        raise ValueError(f"tls_key_file {key_file} holds no PEM private key")
    if "ENCRYPTED" in key_text:
        raise ValueError(f"tls_key_file {key_file} is encrypted; gRPC needs an unencrypted key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_file, key_file, password=lambda: b"")
    except (ssl.SSLError, OSError) as error:
        if getattr(error, "reason", None) == "KEY_VALUES_MISMATCH":
            raise ValueError(
                f"tls_key_file {key_file} is not the private key of tls_cert_file {cert_file}"
            ) from None
        raise ValueError(
            f"tls_cert_file {cert_file} or tls_key_file {key_file} cannot be loaded: {error}"
        ) from None
    if client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=client_ca_file)
        except (ssl.SSLError, OSError) as error:
            raise ValueError(
                f"tls_client_ca_file {client_ca_file} is not a PEM CA bundle: {error}"
            ) from None


class RepositorySettings(_Section):
    """The model repository, which versions serve, and how that set may change."""

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
    model_control_mode: ModelControlMode = Field(
        default=ModelControlMode.NONE,
        description="none (load at start), poll (follow the repository), explicit (load/unload "
        "calls only).",
    )
    repository_poll_s: float = Field(
        default=5.0, gt=0, description="How often `poll` looks at the repository, in seconds."
    )
    startup_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*"],
        description="Models `explicit` loads at start (comma-separated; * is every model; "
        "empty is none).",
    )
    readiness: Readiness = Field(
        default=Readiness.ANY,
        description="any: SERVING once some model serves; all: only while every model named "
        "in the repository has a serving version.",
    )

    _lists = field_validator("specific_versions", "startup_models", mode="before")(_split_commas)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.version_policy is VersionPolicy.SPECIFIC and not self.specific_versions:
            raise ValueError("version_policy=specific needs specific_versions")
        return self


class OnnxSettings(_Section):
    """ONNX Runtime sessions: providers, instances, threads."""

    providers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="ONNX Runtime execution providers, in priority order (comma-separated).",
    )
    on_provider_mismatch: ProviderMismatch = Field(
        default=ProviderMismatch.FAIL,
        description="fail or warn when ONNX Runtime falls back from the first provider asked for.",
    )
    # `auto` (the default of the three layout settings) is resolved from the usable CPUs
    # when the settings are built (cpus.py, docs/server.md "Defaults that fit the machine"),
    # so engines only ever see numbers; an explicit value is never changed.
    instances: int = Field(
        default=AUTO_DEFAULT,
        ge=1,
        le=64,
        description="Sessions per model version (parallel batches); auto: half the usable CPUs, "
        "at least 2.",
    )
    intra_op_threads: int = Field(
        default=AUTO_DEFAULT,
        ge=0,
        description="ORT intra-op threads per session; 0 lets ORT choose; auto: 2 (1 on one "
        "CPU), or the usable CPUs shared among instances set explicitly.",
    )
    inter_op_threads: int = Field(
        default=1, ge=0, description="ORT inter-op threads; 0 lets ORT choose."
    )
    allow_spinning: bool = Field(
        default=AUTO_DEFAULT,
        description="Let ORT threads spin while waiting (burns CPU on small machines); auto: off.",
    )
    graph_optimization_level: GraphOptimizationLevel = Field(
        default=GraphOptimizationLevel.ALL, description="ORT graph optimization level."
    )

    _lists = field_validator("providers", mode="before")(_split_commas)
    # The layout settings that were `auto`, and the usable CPUs they were resolved from.
    _auto: frozenset[str] = PrivateAttr(default=frozenset())
    _cpus: UsableCpus | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _resolve_auto(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        if not isinstance(data, Mapping):
            return handler(data)
        values = dict(data)
        auto = frozenset(name for name in LAYOUT_SETTINGS
                         if _is_auto(values.get(name, AUTO)))  # fmt: skip
        cpus = usable_cpus()
        if auto:
            instances = None if "instances" in auto else _as_int(values["instances"])
            threads = None if "intra_op_threads" in auto else _as_int(values["intra_op_threads"])
            layout = default_layout(cpus.count, instances=instances, intra_op_threads=threads)
            for name in auto:
                values[name] = getattr(layout, name)
        settings = handler(values)
        settings._auto = auto
        settings._cpus = cpus
        return settings

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.providers:
            raise ValueError("providers must name at least one ONNX Runtime provider")
        return self

    @property
    def auto_settings(self) -> frozenset[str]:
        """The layout settings that were `auto` and got their value from the usable CPUs."""
        return self._auto

    @property
    def usable_cpus(self) -> UsableCpus:
        """The CPUs this process could use when the settings were built."""
        return self._cpus if self._cpus is not None else usable_cpus()


class EngineChoice(StrEnum):
    """Which artifact of a version serves it (docs/optimize.md)."""

    AUTO = "auto"  # the fastest admitted artifact this machine can run
    FP32 = "fp32"  # model.onnx, or its offline-optimized FP32 graph when admitted
    INT8 = "int8"  # the static INT8 (QDQ) ONNX graph
    TENSORRT = "tensorrt"  # the native TensorRT plan


def _split_pairs(value: Any) -> Any:
    # Flags and environment variables give mappings as "a=x,b=y".
    if isinstance(value, str):
        pairs = {}
        for item in _split_commas(value):
            name, sep, choice = item.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"expected name=value pairs separated by commas, got {item!r}")
            pairs[name.strip()] = choice.strip()
        return pairs
    return value


class TensorRTSettings(_Section):
    """The native TensorRT engine (model.plan): its GPU and execution contexts."""

    cuda_device: int = Field(default=0, ge=0, description="CUDA device that runs TensorRT plans.")
    tensorrt_instances: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Execution contexts per TensorRT plan, each with its own CUDA stream.",
    )


class EngineSettings(_Section):
    """Which artifact serves a version, and each engine's own settings."""

    engine: EngineChoice = Field(
        default=EngineChoice.AUTO,
        description="auto, fp32, int8 or tensorrt: the artifact every model serves unless "
        "model_engines names another; auto picks the fastest admitted one this machine runs.",
    )
    model_engines: Annotated[dict[str, EngineChoice], NoDecode] = Field(
        default_factory=dict,
        description="Per-model choices as name=choice pairs (comma-separated), e.g. "
        "composer-cnn=int8,tiny=fp32.",
    )
    # Built per settings object, not once at import: `auto` reads the CPUs of that moment.
    onnx: OnnxSettings = Field(default_factory=OnnxSettings)
    tensorrt: TensorRTSettings = TensorRTSettings()

    _pairs = field_validator("model_engines", mode="before")(_split_pairs)

    def choice_for(self, model: str) -> EngineChoice:
        """The engine choice of one model."""
        return self.model_engines.get(model, self.engine)


class BatchingSettings(_Section):
    """Triton's dynamic batching knobs, per model version."""

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

    _lists = field_validator("preferred_batch_sizes", mode="before")(_split_commas)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if any(size < 1 or size > self.max_batch_size for size in self.preferred_batch_sizes):
            raise ValueError(
                f"preferred_batch_sizes must lie in 1..max_batch_size ({self.max_batch_size}): "
                f"{self.preferred_batch_sizes}"
            )
        return self


class StreamSettings(_Section):
    """Limits and defaults of clips and streams."""

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
    stream_write_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest wait for a client to take the next stream result (it stopped "
        "reading; gRPC flow control holds the write); then the stream ends RESOURCE_EXHAUSTED.",
    )
    max_chunk_bytes: int = Field(
        default=1024 * 1024, ge=1, description="Largest audio chunk in one stream message."
    )
    max_windows_in_flight_per_stream: int = Field(
        default=8,
        ge=1,
        description="Windows one stream may have queued or computing before reads pause.",
    )
    float_samples: FloatSamples = Field(
        default=FloatSamples.REJECT,
        description="reject: a float sample beyond +-8 is INVALID_ARGUMENT; clip: float "
        "samples are clipped to [-1, 1]. NaN and infinity are always INVALID_ARGUMENT.",
    )


class AdmissionSettings(_Section):
    """What a clip or tensor call may cost; checked before work is done for it."""

    min_hop_ms: int = Field(
        default=10, ge=1, description="Smallest hop a request may ask for (INVALID_ARGUMENT)."
    )
    min_hop_window_fraction: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="Smallest hop as a fraction of the model's window (INVALID_ARGUMENT).",
    )
    max_windows_per_request: int = Field(
        default=8192,
        ge=1,
        description="Most windows one Classify or ModelInfer call may cut (OUT_OF_RANGE).",
    )
    max_unary_calls_in_flight: int = Field(
        default=256,
        ge=1,
        description="Classify and ModelInfer calls served at once; more is RESOURCE_EXHAUSTED.",
    )


class RateLimitSettings(_Section):
    """Per-client token buckets, by token name (auth_tokens_file) or else client address."""

    client_requests_per_s: float = Field(
        default=0.0,
        ge=0,
        description="Calls one client may start per second, on average; 0 is no limit "
        "(RESOURCE_EXHAUSTED with retry-after-ms).",
    )
    client_request_burst: int = Field(
        default=50, ge=1, description="Calls one client may start at once."
    )
    client_audio_s_per_s: float = Field(
        default=0.0,
        ge=0,
        description="Seconds of audio one client may send per second, on average, counted as "
        "request bytes / 32000 (16 kHz 16-bit mono); 0 is no limit.",
    )
    client_audio_burst_s: float = Field(
        default=3600.0, gt=0, description="Seconds of audio one client may send at once."
    )
    client_calls_in_flight: int = Field(
        default=0,
        ge=0,
        description="Calls and streams one client may have open at once; 0 is no limit "
        "(RESOURCE_EXHAUSTED with retry-after-ms).",
    )


class DriftSettings(_Section):
    """Drift scores of each version against its model.json reference_stats."""

    drift_interval_s: float = Field(
        default=15.0,
        ge=0,
        description="How often drift scores are computed, in seconds, on one timer thread; "
        "0 turns drift statistics off.",
    )
    drift_window_windows: int = Field(
        default=1000,
        ge=1,
        description="Drift scores cover this many of the last windows a version served.",
    )
    drift_min_windows: int = Field(
        default=200,
        ge=1,
        description="Windows a version must have served before its drift scores are exported.",
    )
    drift_mel_every_windows: int = Field(
        default=8,
        ge=1,
        description="Every n-th window is copied for the log-mel mean shift (at most 64 "
        "wait per version between two computations).",
    )


class ProcessSettings(_Section):
    """Shutdown and logs."""

    drain_delay_s: float = Field(
        default=5.0,
        ge=0,
        description="After SIGTERM, how long health says NOT_SERVING while calls are still "
        "served, so load balancers stop sending new ones (SIGINT skips it).",
    )
    shutdown_grace_s: float = Field(
        default=10.0,
        ge=0,
        description="After drain_delay_s, how long in-flight calls and streams may finish "
        "while new calls get UNAVAILABLE.",
    )
    log_level: str = Field(default="INFO", description="Python logging level name.")
    log_format: Literal["json", "text"] | None = Field(
        default=None,
        description="Log lines as json (one object a line, for production) or text (readable, "
        "for development); unset: text when APP_ENV=dev, else json.",
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(
                f"log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL: {value!r}"
            )
        return level


class ServerSettings(BaseSettings):
    """Every knob of `mozart serve`, in sections. Units are in the names."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=True
    )

    network: NetworkSettings = NetworkSettings()
    http: HttpSettings = HttpSettings()
    tls: TlsSettings = TlsSettings()
    repository: RepositorySettings = RepositorySettings()
    engine: EngineSettings = Field(default_factory=EngineSettings)
    batching: BatchingSettings = BatchingSettings()
    streams: StreamSettings = StreamSettings()
    admission: AdmissionSettings = AdmissionSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    drift: DriftSettings = DriftSettings()
    process: ProcessSettings = ProcessSettings()

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        """Settings from keywords (flat names or sections), then the environment, then a file."""
        super().__init__(**values)
        self._sources = _sources_of(SOURCED_SETTINGS, values)

    def sources(self) -> dict[str, str]:
        """Where each layout and batch-limit setting came from.

        `auto` (resolved from the usable CPUs), `flag` (a keyword: `mozart serve` passes
        its flags as keywords), `env`, `file` (MOZART_CONFIG_FILE) or `default`.
        """
        auto = self.engine.onnx.auto_settings
        return {name: AUTO if name in auto else source for name, source in self._sources.items()}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (keywords) beat environment variables, which beat the optional TOML file."""
        sources: list[PydanticBaseSettingsSource] = [
            _Nested(settings_cls, init_settings),
            _FlatEnvironment(settings_cls),
        ]
        config_file = os.environ.get(CONFIG_FILE_VARIABLE)
        if config_file:
            toml = TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file))
            sources.append(_Nested(settings_cls, toml))
        return tuple(sources)


def _sources_of(names: Sequence[str], keywords: Mapping[str, Any]) -> dict[str, str]:
    fields = flat_fields()
    given = nest(keywords)
    config_file = os.environ.get(CONFIG_FILE_VARIABLE)
    in_file: dict[str, Any] = {}
    if config_file and Path(config_file).is_file():
        with Path(config_file).open("rb") as file:  # the settings read it a moment ago
            in_file = nest(tomllib.load(file))
    found = {}
    for name in names:
        path, _ = fields[name]
        if _holds(given, (*path, name)):
            found[name] = "flag"
        elif ENV_PREFIX + name.upper() in os.environ or name in alias_settings(os.environ):
            found[name] = "env"
        elif _holds(in_file, (*path, name)):
            found[name] = "file"
        else:
            found[name] = "default"
    return found


def _holds(values: Any, path: tuple[str, ...]) -> bool:
    """Whether nested `values` (mappings or section objects) set the setting at `path`."""
    for part in path:
        if isinstance(values, BaseModel):
            if part not in values.model_fields_set:
                return False
            values = getattr(values, part)
        elif isinstance(values, Mapping) and part in values:
            values = values[part]
        else:
            return False
    return True


def flat_fields() -> dict[str, tuple[tuple[str, ...], FieldInfo]]:
    """Every setting by its flat name: (path of sections, field)."""
    found: dict[str, tuple[tuple[str, ...], FieldInfo]] = {}

    def walk(model: type[BaseModel], path: tuple[str, ...]) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, _Section):
                walk(annotation, (*path, name))
            else:
                found[name] = (path, field)

    walk(ServerSettings, ())
    return found


def nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """Moves flat setting names into their sections; section tables and unknown names stay."""
    fields = flat_fields()
    nested: dict[str, Any] = {}
    for name, value in values.items():
        # `engine` is both a section and a setting in it: a table under it is the section.
        is_section_table = isinstance(value, Mapping) and name in ServerSettings.model_fields
        if name in fields and not is_section_table:
            path, _ = fields[name]
            target = nested
            for section in path:
                target = target.setdefault(section, {})
            target[name] = value
        else:
            _merge(nested, {name: value})
    return nested


def _merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping):
            _merge(target.setdefault(key, {}), value)
        else:
            target[key] = value


class _Nested(PydanticBaseSettingsSource):
    """Wraps a source whose keys may be flat setting names, and nests them."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self._inner = inner

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: values come from __call__."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return nest(self._inner())


class _FlatEnvironment(PydanticBaseSettingsSource):
    """`MOZART_<FLAT_NAME>` variables, nested into their sections, over the DevOps guide's
    names (APP_ENV, LOG_LEVEL, API_PORT...: env_aliases.py) where no MOZART_* one is set."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: values come from __call__."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values = alias_settings(os.environ) | {
            name: os.environ[variable]
            for name in flat_fields()
            if (variable := ENV_PREFIX + name.upper()) in os.environ
        }
        return nest(values)
