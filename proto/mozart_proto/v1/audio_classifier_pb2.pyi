from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_ENCODING_UNSPECIFIED: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_PCM_S16LE: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_PCM_F32LE: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_WAV: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_FLAC: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_OGG: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_MP3: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_AIFF: _ClassVar[AudioEncoding]
    AUDIO_ENCODING_AUTO: _ClassVar[AudioEncoding]

class StreamEndReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STREAM_END_REASON_UNSPECIFIED: _ClassVar[StreamEndReason]
    STREAM_END_REASON_COMPLETE: _ClassVar[StreamEndReason]
    STREAM_END_REASON_DRAINED: _ClassVar[StreamEndReason]

class Task(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_UNSPECIFIED: _ClassVar[Task]
    TASK_MULTICLASS: _ClassVar[Task]
    TASK_MULTILABEL: _ClassVar[Task]

class VersionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERSION_STATE_UNSPECIFIED: _ClassVar[VersionState]
    VERSION_STATE_LOADING: _ClassVar[VersionState]
    VERSION_STATE_READY: _ClassVar[VersionState]
    VERSION_STATE_UNLOADING: _ClassVar[VersionState]
    VERSION_STATE_UNAVAILABLE: _ClassVar[VersionState]

class RolloutState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLLOUT_STATE_UNSPECIFIED: _ClassVar[RolloutState]
    ROLLOUT_STATE_NONE: _ClassVar[RolloutState]
    ROLLOUT_STATE_ACTIVE: _ClassVar[RolloutState]
    ROLLOUT_STATE_ROLLED_BACK: _ClassVar[RolloutState]
    ROLLOUT_STATE_PROMOTED: _ClassVar[RolloutState]
AUDIO_ENCODING_UNSPECIFIED: AudioEncoding
AUDIO_ENCODING_PCM_S16LE: AudioEncoding
AUDIO_ENCODING_PCM_F32LE: AudioEncoding
AUDIO_ENCODING_WAV: AudioEncoding
AUDIO_ENCODING_FLAC: AudioEncoding
AUDIO_ENCODING_OGG: AudioEncoding
AUDIO_ENCODING_MP3: AudioEncoding
AUDIO_ENCODING_AIFF: AudioEncoding
AUDIO_ENCODING_AUTO: AudioEncoding
STREAM_END_REASON_UNSPECIFIED: StreamEndReason
STREAM_END_REASON_COMPLETE: StreamEndReason
STREAM_END_REASON_DRAINED: StreamEndReason
TASK_UNSPECIFIED: Task
TASK_MULTICLASS: Task
TASK_MULTILABEL: Task
VERSION_STATE_UNSPECIFIED: VersionState
VERSION_STATE_LOADING: VersionState
VERSION_STATE_READY: VersionState
VERSION_STATE_UNLOADING: VersionState
VERSION_STATE_UNAVAILABLE: VersionState
ROLLOUT_STATE_UNSPECIFIED: RolloutState
ROLLOUT_STATE_NONE: RolloutState
ROLLOUT_STATE_ACTIVE: RolloutState
ROLLOUT_STATE_ROLLED_BACK: RolloutState
ROLLOUT_STATE_PROMOTED: RolloutState

class AudioFormat(_message.Message):
    __slots__ = ("encoding", "sample_rate_hz", "channels")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    encoding: AudioEncoding
    sample_rate_hz: int
    channels: int
    def __init__(self, encoding: _Optional[_Union[AudioEncoding, str]] = ..., sample_rate_hz: _Optional[int] = ..., channels: _Optional[int] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("model", "format", "audio", "hop_ms", "top_k", "include_embedding")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    HOP_MS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    format: AudioFormat
    audio: bytes
    hop_ms: int
    top_k: int
    include_embedding: bool
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., format: _Optional[_Union[AudioFormat, _Mapping]] = ..., audio: _Optional[bytes] = ..., hop_ms: _Optional[int] = ..., top_k: _Optional[int] = ..., include_embedding: _Optional[bool] = ...) -> None: ...

class LabelScore(_message.Message):
    __slots__ = ("label", "score")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    label: str
    score: float
    def __init__(self, label: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class WindowResult(_message.Message):
    __slots__ = ("index", "start_ms", "end_ms", "top_k", "scores", "smoothed_scores", "model_name", "model_version", "queue_time_us", "compute_time_us", "smoothed_top_k", "embedding", "rms_dbfs", "silent", "low_confidence")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    SMOOTHED_SCORES_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    QUEUE_TIME_US_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_TIME_US_FIELD_NUMBER: _ClassVar[int]
    SMOOTHED_TOP_K_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    RMS_DBFS_FIELD_NUMBER: _ClassVar[int]
    SILENT_FIELD_NUMBER: _ClassVar[int]
    LOW_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    index: int
    start_ms: int
    end_ms: int
    top_k: _containers.RepeatedCompositeFieldContainer[LabelScore]
    scores: _containers.RepeatedScalarFieldContainer[float]
    smoothed_scores: _containers.RepeatedScalarFieldContainer[float]
    model_name: str
    model_version: str
    queue_time_us: int
    compute_time_us: int
    smoothed_top_k: _containers.RepeatedCompositeFieldContainer[LabelScore]
    embedding: _containers.RepeatedScalarFieldContainer[float]
    rms_dbfs: float
    silent: bool
    low_confidence: bool
    def __init__(self, index: _Optional[int] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., top_k: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ..., scores: _Optional[_Iterable[float]] = ..., smoothed_scores: _Optional[_Iterable[float]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., queue_time_us: _Optional[int] = ..., compute_time_us: _Optional[int] = ..., smoothed_top_k: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ..., embedding: _Optional[_Iterable[float]] = ..., rms_dbfs: _Optional[float] = ..., silent: _Optional[bool] = ..., low_confidence: _Optional[bool] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("top_k", "scores", "window_count", "audio_duration_ms", "silent_window_count", "low_confidence_window_count")
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_COUNT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    SILENT_WINDOW_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOW_CONFIDENCE_WINDOW_COUNT_FIELD_NUMBER: _ClassVar[int]
    top_k: _containers.RepeatedCompositeFieldContainer[LabelScore]
    scores: _containers.RepeatedScalarFieldContainer[float]
    window_count: int
    audio_duration_ms: int
    silent_window_count: int
    low_confidence_window_count: int
    def __init__(self, top_k: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ..., scores: _Optional[_Iterable[float]] = ..., window_count: _Optional[int] = ..., audio_duration_ms: _Optional[int] = ..., silent_window_count: _Optional[int] = ..., low_confidence_window_count: _Optional[int] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("model_name", "model_version", "labels", "windows", "summary", "request_id")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    windows: _containers.RepeatedCompositeFieldContainer[WindowResult]
    summary: Summary
    request_id: str
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., windows: _Optional[_Iterable[_Union[WindowResult, _Mapping]]] = ..., summary: _Optional[_Union[Summary, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class StreamConfig(_message.Message):
    __slots__ = ("model", "format", "hop_ms", "top_k", "smoothing", "include_embedding")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    HOP_MS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    SMOOTHING_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    format: AudioFormat
    hop_ms: int
    top_k: int
    smoothing: float
    include_embedding: bool
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., format: _Optional[_Union[AudioFormat, _Mapping]] = ..., hop_ms: _Optional[int] = ..., top_k: _Optional[int] = ..., smoothing: _Optional[float] = ..., include_embedding: _Optional[bool] = ...) -> None: ...

class StreamClassifyRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: StreamConfig
    audio: bytes
    def __init__(self, config: _Optional[_Union[StreamConfig, _Mapping]] = ..., audio: _Optional[bytes] = ...) -> None: ...

class StreamNotice(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class StreamClassifyResponse(_message.Message):
    __slots__ = ("is_final", "window", "summary", "notice", "request_id", "end_reason", "labels")
    IS_FINAL_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    is_final: bool
    window: WindowResult
    summary: Summary
    notice: StreamNotice
    request_id: str
    end_reason: StreamEndReason
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, is_final: _Optional[bool] = ..., window: _Optional[_Union[WindowResult, _Mapping]] = ..., summary: _Optional[_Union[Summary, _Mapping]] = ..., notice: _Optional[_Union[StreamNotice, _Mapping]] = ..., request_id: _Optional[str] = ..., end_reason: _Optional[_Union[StreamEndReason, str]] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "versions", "labels", "task", "sample_rate_hz", "window_samples", "window_ms", "default_hop_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_HOP_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    versions: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.RepeatedScalarFieldContainer[str]
    task: Task
    sample_rate_hz: int
    window_samples: int
    window_ms: int
    default_hop_ms: int
    def __init__(self, name: _Optional[str] = ..., versions: _Optional[_Iterable[str]] = ..., labels: _Optional[_Iterable[str]] = ..., task: _Optional[_Union[Task, str]] = ..., sample_rate_hz: _Optional[int] = ..., window_samples: _Optional[int] = ..., window_ms: _Optional[int] = ..., default_hop_ms: _Optional[int] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ...) -> None: ...

class VersionStatus(_message.Message):
    __slots__ = ("version", "state", "reason")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    version: str
    state: VersionState
    reason: str
    def __init__(self, version: _Optional[str] = ..., state: _Optional[_Union[VersionState, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ModelStatus(_message.Message):
    __slots__ = ("name", "versions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    versions: _containers.RepeatedCompositeFieldContainer[VersionStatus]
    def __init__(self, name: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[VersionStatus, _Mapping]]] = ...) -> None: ...

class ListModelStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelStatusResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelStatus]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelStatus, _Mapping]]] = ...) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("name", "reload")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RELOAD_FIELD_NUMBER: _ClassVar[int]
    name: str
    reload: bool
    def __init__(self, name: _Optional[str] = ..., reload: _Optional[bool] = ...) -> None: ...

class UnloadModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RolloutGuardrails(_message.Message):
    __slots__ = ("max_error_ratio", "max_p99_latency_ratio", "min_agreement", "min_samples", "window_size")
    MAX_ERROR_RATIO_FIELD_NUMBER: _ClassVar[int]
    MAX_P99_LATENCY_RATIO_FIELD_NUMBER: _ClassVar[int]
    MIN_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    MIN_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    max_error_ratio: float
    max_p99_latency_ratio: float
    min_agreement: float
    min_samples: int
    window_size: int
    def __init__(self, max_error_ratio: _Optional[float] = ..., max_p99_latency_ratio: _Optional[float] = ..., min_agreement: _Optional[float] = ..., min_samples: _Optional[int] = ..., window_size: _Optional[int] = ...) -> None: ...

class RolloutPolicy(_message.Message):
    __slots__ = ("weights", "shadow", "guardrails", "auto_promote", "promote_after_s")
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    GUARDRAILS_FIELD_NUMBER: _ClassVar[int]
    AUTO_PROMOTE_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    weights: _containers.ScalarMap[str, int]
    shadow: str
    guardrails: RolloutGuardrails
    auto_promote: bool
    promote_after_s: float
    def __init__(self, weights: _Optional[_Mapping[str, int]] = ..., shadow: _Optional[str] = ..., guardrails: _Optional[_Union[RolloutGuardrails, _Mapping]] = ..., auto_promote: _Optional[bool] = ..., promote_after_s: _Optional[float] = ...) -> None: ...

class GetRolloutRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SetRolloutRequest(_message.Message):
    __slots__ = ("name", "policy", "clear")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    name: str
    policy: RolloutPolicy
    clear: bool
    def __init__(self, name: _Optional[str] = ..., policy: _Optional[_Union[RolloutPolicy, _Mapping]] = ..., clear: _Optional[bool] = ...) -> None: ...

class RolloutEvent(_message.Message):
    __slots__ = ("kind", "version", "reason", "figures", "unix_ms")
    class FiguresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    version: str
    reason: str
    figures: _containers.ScalarMap[str, float]
    unix_ms: int
    def __init__(self, kind: _Optional[str] = ..., version: _Optional[str] = ..., reason: _Optional[str] = ..., figures: _Optional[_Mapping[str, float]] = ..., unix_ms: _Optional[int] = ...) -> None: ...

class RolloutVersionFigures(_message.Message):
    __slots__ = ("version", "samples", "errors", "p99_latency_ms", "agreement_samples", "agreement")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    P99_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    version: str
    samples: int
    errors: int
    p99_latency_ms: float
    agreement_samples: int
    agreement: float
    def __init__(self, version: _Optional[str] = ..., samples: _Optional[int] = ..., errors: _Optional[int] = ..., p99_latency_ms: _Optional[float] = ..., agreement_samples: _Optional[int] = ..., agreement: _Optional[float] = ...) -> None: ...

class RolloutStatus(_message.Message):
    __slots__ = ("name", "state", "policy", "weights", "baseline", "shadow", "source", "last_event", "versions")
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: RolloutState
    policy: RolloutPolicy
    weights: _containers.ScalarMap[str, int]
    baseline: str
    shadow: str
    source: str
    last_event: RolloutEvent
    versions: _containers.RepeatedCompositeFieldContainer[RolloutVersionFigures]
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[RolloutState, str]] = ..., policy: _Optional[_Union[RolloutPolicy, _Mapping]] = ..., weights: _Optional[_Mapping[str, int]] = ..., baseline: _Optional[str] = ..., shadow: _Optional[str] = ..., source: _Optional[str] = ..., last_event: _Optional[_Union[RolloutEvent, _Mapping]] = ..., versions: _Optional[_Iterable[_Union[RolloutVersionFigures, _Mapping]]] = ...) -> None: ...
