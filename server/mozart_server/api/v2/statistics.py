"""ModelStatistics for the v2 protocol, from each version's own batcher and call counters.

Both APIs share one batcher per model version, so the counters cover all traffic:
native Classify and StreamClassify as well as ModelInfer. They start at zero when a
version loads (a reload starts them again).
"""

from __future__ import annotations

from collections.abc import Sequence

from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_server.models.registry import ServingVersion

_NS_PER_S = 1_000_000_000


def _duration(count: int, seconds: float) -> v2.StatisticDuration:
    return v2.StatisticDuration(count=count, ns=int(seconds * _NS_PER_S))


def model_statistics(models: Sequence[ServingVersion]) -> v2.ModelStatisticsResponse:
    """Statistics of each given version.

    `inference_count` counts windows (a request of batch N counts N),
    `execution_count` counts engine batches. `success` and `fail` count the calls
    and streams that used the version, with their whole duration; `queue` is per
    submission to the batcher, `compute_infer` per batch. `batch_stats` has one entry
    per batch size the engine ran (rows, ascending), with those batches' count and
    compute time in `compute_infer`; the engine call includes copying the input in and
    the outputs out, so `compute_input` and `compute_output` stay empty.
    """
    response = v2.ModelStatisticsResponse()
    for model in models:
        batcher = model.batcher.statistics
        calls = model.calls
        response.model_stats.add(
            name=model.name,
            version=model.version,
            last_inference=calls.last_call_unix_ms,
            inference_count=batcher.windows,
            execution_count=batcher.batches,
            inference_stats=v2.InferStatistics(
                success=_duration(calls.success, calls.success_s),
                fail=_duration(calls.failed, calls.failed_s),
                queue=_duration(batcher.queued, batcher.queue_s),
                compute_infer=_duration(batcher.batches, batcher.compute_s),
            ),
            batch_stats=[
                v2.InferBatchStatistics(
                    batch_size=size, compute_infer=_duration(same.batches, same.compute_s)
                )
                for size, same in sorted(batcher.by_batch_size.items())
            ],
        )
    return response
