"""A small CNN trained on the synthetic corpus, for the training tests and the torchrun worker."""

from __future__ import annotations

from pathlib import Path

from mozart_trainer.config import TrainConfig, load_config
from mozart_trainer.corpus import list_labels, load_split
from mozart_trainer.frontend import FrontEndConfig
from mozart_trainer.training import (
    EpochCallback,
    TrainResult,
    measure_normalisation,
    train_model,
)

SMALL_MODEL = (
    "data.train_hop_ms=500",
    "model.channels=[8, 16]",
    "model.embedding_dim=16",
    "model.dropout=0.0",
    "optim.learning_rate=0.01",
    "optim.patience_epochs=10",
)


def small_config(root: Path, out: Path, *overrides: str) -> TrainConfig:
    """A fast training configuration for the corpus at `root`, writing under `out`."""
    return load_config(None, [f"data.root={root}", f"output_dir={out}", *SMALL_MODEL, *overrides])


def train_small(
    config: TrainConfig, *, resume: bool = False, on_epoch: EpochCallback | None = None
) -> TrainResult:
    """Loads the train and val splits of `config.data.root` and trains on them."""
    root = config.data.root
    labels = list_labels(root, "train")
    train = load_split(
        root, "train", labels, sample_rate_hz=16_000, window_samples=48_000, hop_samples=8_000
    )
    val = load_split(
        root, "val", labels, sample_rate_hz=16_000, window_samples=48_000, hop_samples=24_000
    )
    mean, std = measure_normalisation(config, train, FrontEndConfig())
    front_end = config.front_end.build(16_000, mean, std)
    return train_model(config, train, val, labels, front_end, resume=resume, on_epoch=on_epoch)
