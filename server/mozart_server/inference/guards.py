"""Checks on what an engine returned before it becomes an answer: only finite scores leave."""

from __future__ import annotations

import logging

import numpy as np

from mozart_server.errors import NonFiniteScoresError
from mozart_server.models.registry import ServingVersion
from mozart_server.observability.metrics import ServerMetrics
from mozart_server.tensors import FloatArray

logger = logging.getLogger(__name__)


def ensure_finite(scores: FloatArray, model: ServingVersion, metrics: ServerMetrics) -> None:
    """Raises when any score is NaN or infinite; logs (with the request id) and counts it.

    Raises:
        NonFiniteScoresError: answered INTERNAL with a fixed message.
    """
    finite = np.isfinite(scores)
    if finite.all():
        return
    bad_rows = int((~finite.reshape(len(scores), -1).all(axis=1)).sum()) if scores.ndim else 1
    labels = {"model": model.name, "version": model.version}
    metrics.nonfinite_scores.labels(**labels).inc(bad_rows)
    logger.error("the model returned non-finite scores", extra={**labels, "windows": bad_rows})
    raise NonFiniteScoresError()
