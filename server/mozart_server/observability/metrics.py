"""Every Prometheus metric the server exports, on a registry the composition root owns."""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.metrics import MetricWrapperBase

from mozart_server import server_version

# Latencies run from tens of microseconds (queue) to seconds (a long clip).
_LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

MetricT = TypeVar("MetricT", bound=MetricWrapperBase)


class LabelCache(Generic[MetricT]):
    """A labelled metric's children by label values, looked up in the metric once.

    `metric.labels(...)` costs microseconds (argument checks, a lock, string keys); a hot
    path that records every call or window asks this cache instead. Only for metrics
    whose children are never removed, with label values from a bounded set; past
    `max_children` distinct values it stops caching and asks the metric each time.
    """

    def __init__(self, metric: MetricT, max_children: int = 10_000) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], MetricT] = {}
        self._max_children = max_children

    def get(self, *values: str) -> MetricT:
        """The child for these label values, in the metric's label order."""
        child = self._children.get(values)
        if child is None:
            child = self._metric.labels(*values)
            if len(self._children) < self._max_children:
                self._children[values] = child
        return child


class ServerMetrics:
    """The server's metric objects. Documented one by one in docs/server.md."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # Which release is serving: dashboards and alerts join on it across a rollout.
        self.build = Info("mozart_build", "The server's release.", registry=registry)
        self.build.info({"version": server_version()})
        self.requests = Counter(
            "mozart_requests",
            "Finished RPCs by method, gRPC status code, model and version.",
            ["method", "code", "model", "version"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "mozart_request_duration_seconds",
            "End-to-end RPC time on the server, by method.",
            ["method"],
            buckets=_LATENCY_BUCKETS_S,
            registry=registry,
        )
        # The HTTP API's calls (REST and WebSocket), apart from the gRPC ones above so
        # that the gRPC series keep their labels; the code is the gRPC status name too.
        self.http_requests = Counter(
            "mozart_http_requests",
            "Finished HTTP API calls by method (the gRPC method each stands for), gRPC "
            "status name, model, version and protocol (http, websocket).",
            ["method", "code", "model", "version", "protocol"],
            registry=registry,
        )
        self.http_request_duration = Histogram(
            "mozart_http_request_duration_seconds",
            "End-to-end HTTP API call time on the server, by method and protocol.",
            ["method", "protocol"],
            buckets=_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.queue_duration = Histogram(
            "mozart_queue_duration_seconds",
            "Time a window waited in the batcher's queue before its batch started.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.compute_duration = Histogram(
            "mozart_compute_duration_seconds",
            "Engine time of one batch.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.stream_window_latency = Histogram(
            "mozart_stream_window_latency_seconds",
            "Stream window: from the arrival of the chunk that completed it to its result's send.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.batch_size = Histogram(
            "mozart_batch_size",
            "Windows per batch the engine ran.",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "mozart_queue_depth",
            "Windows waiting in the batcher's queue.",
            ["model", "version"],
            registry=registry,
        )
        self.batches_in_flight = Gauge(
            "mozart_batches_in_flight",
            "Batches the engine is computing now.",
            ["model", "version"],
            registry=registry,
        )
        self.windows_dropped = Counter(
            "mozart_windows_dropped",
            "Queued windows dropped before compute, by reason (cancelled, deadline).",
            ["model", "version", "reason"],
            registry=registry,
        )
        self.active_streams = Gauge(
            "mozart_active_streams", "Open StreamClassify calls.", registry=registry
        )
        self.stream_tasks = Gauge(
            "mozart_stream_tasks",
            "Tasks streams own now (window submissions and pending reads).",
            registry=registry,
        )
        self.audio_processed = Counter(
            "mozart_audio_processed_seconds",
            "Seconds of input audio decoded, by method.",
            ["method"],
            registry=registry,
        )
        self.model_loaded = Gauge(
            "mozart_model_loaded",
            "1 while a model version serves; 0 once it failed to load or was unloaded.",
            ["model", "version"],
            registry=registry,
        )
        self.model_load_failures = Counter(
            "mozart_model_load_failures",
            "Model version loads that failed (bad files, graph mismatch, warm-up).",
            ["model", "version"],
            registry=registry,
        )
        self.model_engine_info = Gauge(
            "mozart_model_engine_info",
            "1 for each serving model version, labelled with the engine that serves it: "
            "kind, precision, artifact (file) and device; removed when the version retires.",
            ["model", "version", "kind", "precision", "artifact", "device"],
            registry=registry,
        )
        self.model_swaps = Counter(
            "mozart_model_swaps",
            "Changes to the serving versions of a model while the server runs.",
            ["model"],
            registry=registry,
        )
        self.nonfinite_scores = Counter(
            "mozart_nonfinite_scores",
            "Windows whose scores came back NaN or infinite (answered INTERNAL, never OK).",
            ["model", "version"],
            registry=registry,
        )
        self.calls_refused_early = Counter(
            "mozart_calls_refused_early",
            "Clip and tensor calls refused before decoding or queueing, by reason.",
            ["reason"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "mozart_auth_failures",
            "Calls refused for their bearer token, by reason (missing, malformed, wrong, "
            "throttled).",
            ["reason"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "mozart_rate_limited",
            "Calls refused by a per-client rate limit, by limit (requests, audio) and client "
            "(its token name; empty without auth_tokens_file).",
            ["limit", "client"],
            registry=registry,
        )
        self.client_requests = Counter(
            "mozart_client_requests",
            "Finished calls by client (token name from auth_tokens_file) and gRPC status code.",
            ["client", "code"],
            registry=registry,
        )
        self.engines_open = Gauge(
            "mozart_engines_open",
            "Engines created and not yet closed (serving, warming up or draining).",
            registry=registry,
        )
        self.batchers_open = Gauge(
            "mozart_batchers_open",
            "Batchers started and not yet closed.",
            registry=registry,
        )
        self.rollout_weight = Gauge(
            "mozart_rollout_weight",
            "Percent of a model's unversioned calls a version gets under its rollout now.",
            ["model", "version"],
            registry=registry,
        )
        self.rollout_rollbacks = Counter(
            "mozart_rollout_rollbacks",
            "Candidates a rollout's guardrails rolled back (weight set to 0).",
            ["model", "version"],
            registry=registry,
        )
        self.rollout_promotions = Counter(
            "mozart_rollout_promotions",
            "Promotion steps of a rollout's candidate (10 -> 50 -> 100).",
            ["model", "version"],
            registry=registry,
        )
        self.rollout_requests = Counter(
            "mozart_rollout_requests",
            "Calls and shadow copies a version under rollout answered, by gRPC status code.",
            ["model", "version", "code"],
            registry=registry,
        )
        self.rollout_window_latency = Histogram(
            "mozart_rollout_window_latency_seconds",
            "Queue plus compute time of a version under rollout, per call or stream window.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.rollout_top1_confidence = Histogram(
            "mozart_rollout_top_confidence",
            "Top-1 score of each window a version under rollout scored (mean = sum / count).",
            ["model", "version"],
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
            registry=registry,
        )
        self.rollout_top1_labels = Counter(
            "mozart_rollout_top_labels",
            "Windows a version under rollout scored, by top-1 label (the class distribution).",
            ["model", "version", "label"],
            registry=registry,
        )
        self.rollout_agreement = Counter(
            "mozart_rollout_shadow_windows",
            "Shadow windows compared with the baseline's answer, by result (agree, disagree).",
            ["model", "version", "result"],
            registry=registry,
        )
        self.rollout_shadow_dropped = Counter(
            "mozart_rollout_shadow_dropped",
            "Shadow copies not run because too many were in flight.",
            ["model", "version"],
            registry=registry,
        )
        self.version_leases = Gauge(
            "mozart_version_leases",
            "Calls and streams holding a model version now.",
            registry=registry,
        )
        # Drift against model.json reference_stats (observability/drift.py, docs/server.md).
        self.drift_windows = Gauge(
            "mozart_drift_windows",
            "Windows the drift scores cover now (the last drift_window_windows served).",
            ["model", "version"],
            registry=registry,
        )
        self.drift_rms_psi = Gauge(
            "mozart_drift_rms_psi",
            "Population stability index of the window-RMS histogram against the reference.",
            ["model", "version"],
            registry=registry,
        )
        self.drift_class_psi = Gauge(
            "mozart_drift_class_psi",
            "Population stability index of the predicted classes against the reference.",
            ["model", "version"],
            registry=registry,
        )
        self.drift_mel_mean_shift = Gauge(
            "mozart_drift_mel_mean_shift",
            "Mean over mel bands of |live mean - reference mean| / reference std of the "
            "normalised log-mel.",
            ["model", "version"],
            registry=registry,
        )
        self.drift_mel_windows = Gauge(
            "mozart_drift_mel_windows",
            "Sampled windows the mel shift covers now.",
            ["model", "version"],
            registry=registry,
        )
