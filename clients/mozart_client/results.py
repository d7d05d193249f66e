"""Typed, immutable results returned by the SDK."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum


class ServingStatus(Enum):
    """The answer of `grpc.health.v1.Health/Check`."""

    UNKNOWN = "UNKNOWN"
    SERVING = "SERVING"
    NOT_SERVING = "NOT_SERVING"
    SERVICE_UNKNOWN = "SERVICE_UNKNOWN"


@dataclass(frozen=True)
class LabelScore:
    """One label with its score."""

    label: str
    score: float


@dataclass(frozen=True)
class WindowResult:
    """The classification of one window of audio.

    Attributes:
        index: Zero-based window index in the clip or stream.
        start_ms: Window start, in clip or stream time.
        end_ms: Window end, in clip or stream time.
        top_k: The best labels by raw score, best first.
        scores: Raw scores for every label, in `labels` order.
        smoothed_scores: EMA-smoothed scores (equal to `scores` for Classify and
            without smoothing).
        smoothed_top_k: The best labels by smoothed score, best first (equal to
            `top_k` for Classify and without smoothing); empty from servers older
            than this field.
        model_name: The model that produced the result.
        model_version: Its version.
        queue_time_us: Time the window waited in the server's batcher.
        compute_time_us: Compute time of the batch it ran in.
        latency_ms: For streams, the client-side time from sending the audio
            that completed this window to receiving its result; None for
            Classify, where the whole clip is one request.
        request_id: The id the server logged the call under.
        labels: The label of each entry of `scores` and `smoothed_scores`.
        embedding: The window's embedding, when the call asked for it
            (`include_embedding=True`); empty otherwise.
        rms_dbfs: The window's RMS level in dBFS (-200 for digital silence; 0.0
            from servers older than this field).
        silent: The window is silence or near-silence by the model's threshold:
            it is not classified, and its scores mean nothing.
        low_confidence: The best score is below the model's confidence threshold:
            the top label is a guess.
    """

    index: int
    start_ms: int
    end_ms: int
    top_k: tuple[LabelScore, ...]
    scores: tuple[float, ...]
    smoothed_scores: tuple[float, ...]
    model_name: str
    model_version: str
    queue_time_us: int
    compute_time_us: int
    latency_ms: float | None = None
    request_id: str = ""
    smoothed_top_k: tuple[LabelScore, ...] = ()
    labels: tuple[str, ...] = ()
    embedding: tuple[float, ...] = ()
    rms_dbfs: float = 0.0
    silent: bool = False
    low_confidence: bool = False

    @property
    def label(self) -> str:
        """The best label of this window by raw score (empty when the server sent no top-k)."""
        return self.top_k[0].label if self.top_k else ""

    @property
    def smoothed_label(self) -> str:
        """The best label by smoothed score: what a live display shows when smoothing is on."""
        return self.smoothed_top_k[0].label if self.smoothed_top_k else self.label

    def score_of(self, label: str, *, smoothed: bool = False) -> float:
        """The raw (or smoothed) score of one label; KeyError for a label the model lacks."""
        return _score_of(self.labels, self.smoothed_scores if smoothed else self.scores, label)


@dataclass(frozen=True)
class Summary:
    """The mean of the window scores over a clip or stream, silent windows left out.

    `window_count` counts every window; `silent_window_count` and
    `low_confidence_window_count` say how many of them were flagged. When every
    window was silent, `top_k` is empty.
    """

    top_k: tuple[LabelScore, ...]
    scores: tuple[float, ...]
    window_count: int
    audio_duration_ms: int
    request_id: str = ""
    labels: tuple[str, ...] = ()
    silent_window_count: int = 0
    low_confidence_window_count: int = 0

    @property
    def label(self) -> str:
        """The best label overall (empty when no window was classified)."""
        return self.top_k[0].label if self.top_k else ""

    def score_of(self, label: str) -> float:
        """The mean score of one label; KeyError for a label the model lacks."""
        return _score_of(self.labels, self.scores, label)


def _score_of(labels: tuple[str, ...], scores: tuple[float, ...], label: str) -> float:
    try:
        return scores[labels.index(label)]
    except ValueError:
        raise KeyError(f"no label {label!r} (labels: {', '.join(labels)})") from None


@dataclass(frozen=True)
class StreamNotice:
    """A non-fatal problem the server reported in-band; the stream goes on."""

    code: str
    message: str
    request_id: str = ""


StreamResult = WindowResult | Summary | StreamNotice
"""What `stream()` yields: window results as they arrive, then one Summary."""


@dataclass(frozen=True)
class ClassifyResult:
    """The answer to `classify()`: per-window results and the clip summary."""

    model_name: str
    model_version: str
    labels: tuple[str, ...]
    windows: tuple[WindowResult, ...]
    summary: Summary
    request_id: str


@dataclass(frozen=True)
class ModelInfo:
    """A model the server has loaded."""

    name: str
    versions: tuple[str, ...]
    labels: tuple[str, ...]
    task: str
    sample_rate_hz: int
    window_samples: int
    window_ms: int
    default_hop_ms: int


@dataclass(frozen=True)
class HealthStatus:
    """The health of one service as `grpc.health.v1` reports it ("" is the server)."""

    service: str
    status: ServingStatus

    @property
    def serving(self) -> bool:
        """True when the service answers SERVING."""
        return self.status is ServingStatus.SERVING


class VersionState(StrEnum):
    """Where a model version is in its lifecycle (`mozart.v1.VersionState`).

    A StrEnum, so `state == "READY"` holds and JSON shows the name.
    """

    UNSPECIFIED = "UNSPECIFIED"
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True)
class VersionStatus:
    """The state of one version of a model.

    Attributes:
        version: The version's name, e.g. "1".
        state: LOADING, READY (serving), UNLOADING (finishing its calls) or
            UNAVAILABLE; UNSPECIFIED for a state this SDK does not know.
        reason: Why an UNAVAILABLE version is not serving: its load error, or
            "unloaded"; empty otherwise.
    """

    version: str
    state: VersionState
    reason: str = ""

    @property
    def ready(self) -> bool:
        """True when the version is serving."""
        return self.state is VersionState.READY


@dataclass(frozen=True)
class ModelStatus:
    """A model of the server's repository and the state of each of its versions.

    Attributes:
        name: The model's name.
        versions: The versions the server knows of, oldest first.
    """

    name: str
    versions: tuple[VersionStatus, ...]

    @property
    def ready_versions(self) -> tuple[str, ...]:
        """The versions that are serving, oldest first."""
        return tuple(v.version for v in self.versions if v.ready)


class RolloutState(StrEnum):
    """Where a model's rollout stands (`mozart.v1.RolloutState`)."""

    UNSPECIFIED = "UNSPECIFIED"
    NONE = "NONE"
    ACTIVE = "ACTIVE"
    ROLLED_BACK = "ROLLED_BACK"
    PROMOTED = "PROMOTED"


@dataclass(frozen=True)
class RolloutEvent:
    """The last change a rollout made: set, rolled_back, promoted or file_rejected.

    Attributes:
        figures: The numbers that triggered it (e.g. error_ratio, samples).
        unix_ms: When, in milliseconds since the epoch.
    """

    kind: str
    version: str
    reason: str
    figures: dict[str, float]
    unix_ms: int


@dataclass(frozen=True)
class RolloutVersionFigures:
    """One version's sliding-window figures, as the guardrails judge them."""

    version: str
    samples: int
    errors: int
    p99_latency_ms: float
    agreement_samples: int
    agreement: float


@dataclass(frozen=True)
class RolloutStatus:
    """A model's rollout now.

    Attributes:
        weights: The weights in force (after any rollback or promotion step), in percent.
        policy_weights: The weights as set (file or API).
        shadow: The shadow version in force ("" once rolled back or without one).
        source: "file" (rollout.toml), "api", or "" without a rollout.
    """

    name: str
    state: RolloutState
    weights: dict[str, int]
    policy_weights: dict[str, int]
    baseline: str
    shadow: str
    source: str
    last_event: RolloutEvent | None
    versions: tuple[RolloutVersionFigures, ...]
