"""Shadow copies: the windows a baseline answered, run again on the rollout's shadow version.

The caller's answer never waits for the copy: it runs as a task the router owns (a
bounded number in flight; more are dropped and counted). The copy's outcome, latency,
scores and top-1 agreement with the baseline are recorded; its answer goes nowhere.

The copy carries the windows' samples, never the baseline's mel frames: the shadow may
have another front end, and its own batches compute it (engines/split.py).
"""

from __future__ import annotations

import time

from mozart_server.errors import MozartError, NotFoundError, ResourceExhaustedError
from mozart_server.inference.guards import ensure_finite
from mozart_server.models.registry import ModelRegistry, ServingVersion
from mozart_server.observability.metrics import ServerMetrics
from mozart_server.tensors import FloatArray


def start_shadow(
    registry: ModelRegistry,
    metrics: ServerMetrics,
    baseline: ServingVersion,
    windows: FloatArray,
    scores: FloatArray,
) -> None:
    """Sends a copy of `windows` (which `baseline` scored `scores`) to the shadow, if any."""
    shadow = registry.router.shadow_of(baseline.name, baseline.version)
    if shadow:
        work = _run(registry, metrics, baseline, shadow, windows, scores)
        registry.router.spawn_shadow(baseline.name, shadow, work)


async def _run(  # noqa: PLR0917 (one private call site)
    registry: ModelRegistry,
    metrics: ServerMetrics,
    baseline: ServingVersion,
    version: str,
    windows: FloatArray,
    scores: FloatArray,
) -> None:
    router, name = registry.router, baseline.name
    started = time.monotonic()
    try:
        with registry.lease(name, version, judged=False) as shadow:
            expects = (shadow.manifest.window_samples, shadow.manifest.sample_rate_hz)
            same_input = expects == (
                baseline.manifest.window_samples, baseline.manifest.sample_rate_hz
            )  # fmt: skip
            if not same_input or windows.shape[0] > shadow.batcher.capacity:
                return
            result = await shadow.batcher.submit(windows, None)
            rows = result.outputs.probabilities
            ensure_finite(rows, shadow, metrics)
            router.record(name, version, "OK", time.monotonic() - started)
            router.record_scores(name, version, list(shadow.manifest.labels), rows)
            router.record_agreement(name, version, scores, rows)
    except NotFoundError:
        return  # the shadow version stopped serving meanwhile
    except ResourceExhaustedError:
        metrics.rollout_shadow_dropped.labels(model=name, version=version).inc()
    except MozartError as error:
        router.record(name, version, error.status_code.name, time.monotonic() - started)
