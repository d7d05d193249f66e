"""ModelStatistics for the v2 protocol, read from the server's own Prometheus metrics.

Both APIs share one batcher per model version, so the counters cover all
traffic: native Classify and StreamClassify as well as ModelInfer.
"""

from __future__ import annotations

from collections.abc import Sequence

from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_server.metrics import ServerMetrics
from mozart_server.registry import ServingModel

_NS_PER_S = 1_000_000_000


def _requests_by_outcome(metrics: ServerMetrics, model: ServingModel) -> tuple[int, int]:
    """Finished calls of this version over every method: (succeeded, failed)."""
    succeeded = failed = 0
    for family in metrics.requests.collect():
        for sample in family.samples:
            labels = sample.labels
            if not sample.name.endswith("_total"):
                continue
            if labels.get("model") != model.name or labels.get("version") != model.version:
                continue
            if labels.get("code") == "OK":
                succeeded += int(sample.value)
            else:
                failed += int(sample.value)
    return succeeded, failed


def _histogram(metrics: ServerMetrics, name: str, model: ServingModel) -> tuple[int, float]:
    """(count, sum) of one histogram series of this version; zeros before any batch ran."""
    labels = {"model": model.name, "version": model.version}
    count = metrics.registry.get_sample_value(f"{name}_count", labels) or 0.0
    total = metrics.registry.get_sample_value(f"{name}_sum", labels) or 0.0
    return int(count), total


def model_statistics(
    models: Sequence[ServingModel], metrics: ServerMetrics
) -> v2.ModelStatisticsResponse:
    """Statistics of each given version.

    `inference_count` counts windows (a request of batch N counts N),
    `execution_count` counts engine batches. `queue` is per submission to the
    batcher, `compute_infer` per batch. Per-call durations and the time of the
    last inference are not tracked per model, so `success.ns`, `fail.ns` and
    `last_inference` stay 0.
    """
    response = v2.ModelStatisticsResponse()
    for model in models:
        succeeded, failed = _requests_by_outcome(metrics, model)
        batches, windows = _histogram(metrics, "mozart_batch_size", model)
        queued, queue_s = _histogram(metrics, "mozart_queue_duration_seconds", model)
        computed, compute_s = _histogram(metrics, "mozart_compute_duration_seconds", model)
        response.model_stats.add(
            name=model.name,
            version=model.version,
            inference_count=int(windows),
            execution_count=batches,
            inference_stats=v2.InferStatistics(
                success=v2.StatisticDuration(count=succeeded),
                fail=v2.StatisticDuration(count=failed),
                queue=v2.StatisticDuration(count=queued, ns=int(queue_s * _NS_PER_S)),
                compute_infer=v2.StatisticDuration(count=computed, ns=int(compute_s * _NS_PER_S)),
            ),
        )
    return response
