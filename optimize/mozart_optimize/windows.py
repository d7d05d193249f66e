"""Real corpus windows for calibration and the accuracy gate, cut as the server cuts them.

Windows come from the dataset folder `mozart data` writes (`<root>/<split>/<label>/...`),
decoded and cut by the trainer's own corpus reader at the model's rate, window and
serving hop, so the gate scores the audio the model was trained and evaluated on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mozart_server.models.manifest import Manifest
from mozart_server.tensors import FloatArray
from mozart_trainer.corpus import load_split


@dataclass(frozen=True)
class LabelledWindows:
    """The windows of one split, [n, window_samples], and the label index of each."""

    split: str
    windows: FloatArray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def load_windows(root: Path, split: str, manifest: Manifest) -> LabelledWindows:
    """Every window of a split at the model's serving hop.

    Raises:
        FileNotFoundError: the split has no audio for the model's labels.
    """
    loaded = load_split(
        root,
        split,
        list(manifest.labels),
        sample_rate_hz=manifest.sample_rate_hz,
        window_samples=manifest.window_samples,
        hop_samples=manifest.sample_rate_hz * manifest.default_hop_ms // 1000,
    )
    every = np.arange(loaded.n_windows)
    return LabelledWindows(
        split, loaded.windows(every, manifest.window_samples), loaded.window_labels
    )


def calibration_sample(
    root: Path, split: str, manifest: Manifest, count: int, seed: int
) -> FloatArray:
    """A fixed, seeded sample of `count` windows of a split (all of them when it has fewer)."""
    windows = load_windows(root, split, manifest).windows
    if count >= len(windows):
        return windows
    chosen = np.sort(np.random.default_rng(seed).choice(len(windows), count, replace=False))
    return windows[chosen]
