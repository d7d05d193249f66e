"""Window levels and the flags model.json's thresholds put on results: silent, low-confidence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mozart_server.models.manifest import Manifest
from mozart_server.tensors import FloatArray

#: The amplitude floor of a level: digital silence reads -200 dBFS, as in the trainer's
#: RMS statistics, and never -inf (which JSON cannot carry).
RMS_FLOOR = 1e-10


@dataclass(frozen=True)
class WindowFlags:
    """A window's level in dBFS and what the thresholds make of it."""

    rms_dbfs: float
    silent: bool
    low_confidence: bool


Levels = npt.NDArray[np.float64]


def _dbfs(rms: npt.ArrayLike) -> Levels:
    return np.asarray(20.0 * np.log10(np.maximum(rms, RMS_FLOOR)), dtype=np.float64)


def window_levels_dbfs(samples: FloatArray, window_samples: int, hop: int, count: int) -> Levels:
    """The RMS level of windows 0..count-1 of a clip, as `cut_windows` cuts them.

    A window is `window_samples` long; samples past the clip's end count as zeros (the
    padding of a clip shorter than a window). Uses running sums of squares, so a long
    clip costs one pass, not one per window.
    """
    # Squares in the samples' float32, summed in float64, written after a leading 0 in
    # place: 12 bytes a sample on the event loop, not a float64 copy of the clip twice over.
    squares = np.empty(len(samples) + 1, dtype=np.float64)
    squares[0] = 0.0
    np.cumsum(np.square(samples), dtype=np.float64, out=squares[1:])
    starts = np.arange(count, dtype=np.int64) * hop
    ends = np.minimum(starts + window_samples, len(samples))
    energy = np.maximum(squares[ends] - squares[np.minimum(starts, len(samples))], 0.0)
    return _dbfs(np.sqrt(energy / window_samples))


def window_level_dbfs(window: FloatArray) -> float:
    """The RMS level of one window's samples."""
    return float(_dbfs(np.sqrt(np.mean(np.square(window, dtype=np.float64)))))


def flag_window(manifest: Manifest, rms_dbfs: float, scores: FloatArray) -> WindowFlags:
    """What the manifest's thresholds say of a window; no threshold, no flag."""
    thresholds = manifest.result_thresholds
    silence = None if thresholds is None else thresholds.silence
    confidence = None if thresholds is None else thresholds.low_confidence
    silent = silence is not None and rms_dbfs < silence.rms_dbfs
    low = not silent and confidence is not None and float(np.max(scores)) < confidence.min_top_score
    return WindowFlags(rms_dbfs=rms_dbfs, silent=silent, low_confidence=low)
