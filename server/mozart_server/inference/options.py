"""How a request wants its windows cut and reported: hop, top_k and smoothing, checked."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mozart_server.errors import InvalidArgumentError
from mozart_server.models.manifest import Manifest


@dataclass(frozen=True)
class WindowOptions:
    """How a request wants its windows cut and reported."""

    hop_ms: int
    top_k: int
    smoothing: float


def window_options(
    manifest: Manifest, hop_ms: int, top_k: int, smoothing: float, default_top_k: int
) -> WindowOptions:
    """Applies defaults and checks hop, top_k and smoothing against the model.

    Raises:
        InvalidArgumentError: naming the field that is out of range.
    """
    hop = hop_ms or manifest.default_hop_ms
    if hop > manifest.window_ms:
        raise InvalidArgumentError(
            f"hop_ms is {hop}; it must not exceed the model's window of {manifest.window_ms} ms"
        )
    labels = len(manifest.labels)
    if top_k > labels:
        raise InvalidArgumentError(f"top_k is {top_k}; the model has only {labels} labels")
    if not (math.isfinite(smoothing) and 0.0 <= smoothing < 1.0):
        raise InvalidArgumentError(f"smoothing is {smoothing}; it must lie in [0, 1)")
    return WindowOptions(hop, top_k or min(default_top_k, labels), smoothing)
