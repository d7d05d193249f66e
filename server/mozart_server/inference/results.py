"""What classification returns, whatever the transport: per-window scores and a summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mozart_server.inference.flags import WindowFlags
from mozart_server.models.manifest import Manifest
from mozart_server.tensors import FloatArray


@dataclass(frozen=True)
class WindowScores:
    """One window's scores; `start_sample` counts in the model's sample clock.

    `embedding` is the graph's `embedding` output for the window, only when the
    request asked for it (None otherwise).
    """

    index: int
    start_sample: int
    scores: FloatArray
    smoothed: FloatArray
    queue_time_s: float
    compute_time_s: float
    embedding: FloatArray | None = None
    #: The window's level and flags (inference/flags.py); None: not measured.
    flags: WindowFlags | None = None


@dataclass(frozen=True)
class Summary:
    """The mean of the non-silent windows' scores (zeros when there were none)."""

    scores: FloatArray
    window_count: int
    audio_duration_s: float
    silent_window_count: int = 0
    low_confidence_window_count: int = 0


def summarize(
    manifest: Manifest,
    score_rows: Sequence[FloatArray],
    audio_duration_s: float,
    flags: Sequence[WindowFlags] = (),
) -> Summary:
    """Averages the window scores of a clip or stream, leaving silent windows out.

    `flags` is one per score row, or empty when the windows carry none.
    """
    kept = [row for i, row in enumerate(score_rows) if not (flags and flags[i].silent)]
    if kept:
        mean: FloatArray = np.asarray(np.stack(kept).mean(axis=0), dtype=np.float32)
    else:
        mean = np.zeros(len(manifest.labels), dtype=np.float32)
    return Summary(
        mean,
        len(score_rows),
        audio_duration_s,
        silent_window_count=len(score_rows) - len(kept),
        low_confidence_window_count=sum(flag.low_confidence for flag in flags),
    )


@dataclass(frozen=True)
class ClipResult:
    """A whole clip's windows and summary, from one model version."""

    manifest: Manifest
    top_k: int
    windows: tuple[WindowScores, ...]
    summary: Summary
