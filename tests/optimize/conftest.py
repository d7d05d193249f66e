"""A small real CNN, trained on the synthetic chord corpus and exported as a model version.

It has the default model's layout (log-mel front end in the graph, convolution blocks,
dense layers) with fewer channels, so every optimize stage runs on it in seconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mozart_trainer.corpus import list_labels, load_split
from mozart_trainer.pipeline import build_version
from tests.trainer.conftest import write_corpus
from tests.trainer.synthetic_training import small_config, train_small


@pytest.fixture(scope="session")
def optimize_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train/val/test and a timbre slice of synthetic chords."""
    root = tmp_path_factory.mktemp("optimize-corpus")
    return write_corpus(root, {"train": 4, "val": 2, "test": 2, "test_timbre": 2})


@pytest.fixture(scope="session")
def trained_version(tmp_path_factory: pytest.TempPathFactory, optimize_corpus: Path) -> Path:
    """models/small/1 with model.onnx and model.json, exported by the trainer's own code."""
    work = tmp_path_factory.mktemp("optimize-model")
    config = small_config(
        optimize_corpus, work / "runs", "optim.epochs=3", "name=small", "export_version=1"
    )
    model = train_small(config).model.eval()
    labels = list_labels(optimize_corpus, "train")

    def split(name: str):
        return load_split(optimize_corpus, name, labels, sample_rate_hz=16_000,
                          window_samples=48_000, hop_samples=24_000)  # fmt: skip

    version_dir = work / "models" / "small" / "1"
    version_dir.mkdir(parents=True)
    build_version(
        model, config, labels, digest="synthetic", run_id="", val=split("val"),
        test=split("test"), model_dir=version_dir, metrics={},
    )  # fmt: skip
    return version_dir


@pytest.fixture
def version_copy(trained_version: Path, tmp_path: Path) -> Path:
    """A fresh copy of the trained version for one test to optimize."""
    target = tmp_path / "models" / "small" / "1"
    shutil.copytree(trained_version, target)
    return target
