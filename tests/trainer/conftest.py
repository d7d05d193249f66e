"""Trainer test fixtures: a tiny labelled corpus of synthetic chords in the dataset layout.

Each class is a chord with its own pitches, so a model can learn it in a few
steps. The real corpus (`mozart data build-corpus --smoke`) is used where the
test is about the pipeline on real music.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

LABELS = ("alpha", "beta", "gamma")
SAMPLE_RATE_HZ = 16_000
BASE_HZ = {"alpha": 220.0, "beta": 330.0, "gamma": 495.0}


def tone(label: str, seconds: float, seed: int, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """A noisy chord whose pitches identify the label."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate_hz)) / sample_rate_hz
    base = BASE_HZ[label] * (1.0 + 0.02 * rng.standard_normal())
    audio = sum(np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6.28)) / k for k in (1, 2, 3))
    audio = 0.2 * audio + 0.02 * rng.standard_normal(len(t))
    return audio.astype(np.float32)


def write_corpus(root: Path, works_per_split: dict[str, int], seconds: float = 6.0) -> Path:
    """Writes ``<root>/<split>/<label>/<work>.flac`` and a manifest with a digest."""
    seed = 0
    for split, count in works_per_split.items():
        for label in LABELS:
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                seed += 1
                rate = SAMPLE_RATE_HZ if index % 2 == 0 else 22_050  # exercise resampling
                soundfile.write(
                    folder / f"{label}-{index:03d}.flac", tone(label, seconds, seed, rate), rate
                )
    manifest = {"labels": list(LABELS), "dataset_digest": f"synthetic-{seed:04d}"}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train/val/test plus a ``test_timbre`` slice of synthetic chords (resampling included)."""
    root = tmp_path_factory.mktemp("synthetic-corpus")
    return write_corpus(root, {"train": 4, "val": 2, "test": 2, "test_timbre": 1})
