"""Cutting audio into model windows: the same rule for whole clips and for streams."""

from __future__ import annotations

import numpy as np

from mozart_server.tensors import FloatArray


def hop_samples(hop_ms: int, sample_rate_hz: int) -> int:
    """The hop in samples at the model's rate (at least one sample)."""
    return max(1, round(hop_ms * sample_rate_hz / 1000))


def window_count(total_samples: int, window_samples: int, hop: int) -> int:
    """Windows in a clip: every full window at 0, hop, 2*hop, ...; one padded window if none fit."""
    if total_samples <= 0:
        return 0
    if total_samples < window_samples:
        return 1
    return (total_samples - window_samples) // hop + 1


def cut_windows(samples: FloatArray, window_samples: int, hop: int) -> FloatArray:
    """Returns the clip's windows as a [n, window_samples] float32 array (zero-padded if short)."""
    count = window_count(len(samples), window_samples, hop)
    if len(samples) < window_samples:
        padded = np.zeros((count, window_samples), dtype=np.float32)
        padded[:, : len(samples)] = samples
        return padded
    view = np.lib.stride_tricks.sliding_window_view(samples, window_samples)[::hop]
    return np.ascontiguousarray(view[:count], dtype=np.float32)


def cut_window_range(
    samples: FloatArray, window_samples: int, hop: int, first: int, count: int
) -> FloatArray:
    """Windows first..first+count-1 of a clip, as `cut_windows` would cut them, copied alone.

    Lets a long clip go to the batcher a slice at a time, holding one slice of windows in
    memory instead of all of them.
    """
    start = first * hop
    end = (first + count - 1) * hop + window_samples
    return cut_windows(samples[start:end], window_samples, hop)[:count]


def cut_frame_windows(frames: FloatArray, window_frames: int, step: int, count: int) -> FloatArray:
    """The mel windows of `count` windows `step` frames apart, from a run of frames.

    Args:
        frames: [1, 1, n_mels, total_frames], the front end's frames of the samples from
            the first window's start (so window j is frames j*step .. j*step+window_frames-1).
        window_frames: frames per model window.
        step: the window hop in frames.
        count: how many windows.

    Returns:
        A contiguous [count, 1, n_mels, window_frames] float32 array.
    """
    view = np.lib.stride_tricks.sliding_window_view(frames[0], window_frames, axis=-1)
    # view: [1, n_mels, positions, window_frames] -> [count, 1, n_mels, window_frames]
    picked = view[:, :, : (count - 1) * step + 1 : step]
    return np.ascontiguousarray(np.moveaxis(picked, 2, 0), dtype=np.float32)
