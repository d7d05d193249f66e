"""One rank of a `torchrun` training run on the synthetic corpus (driven by test_devices.py).

Usage: torchrun --nproc_per_node N tests/trainer/distributed_run.py CORPUS OUT
Rank 0 writes OUT/result.json with the epoch history and the step count it reached.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from mozart_trainer.config import load_config
from mozart_trainer.corpus import list_labels, load_split
from mozart_trainer.frontend import FrontEndConfig
from mozart_trainer.training import checkpoint_path, measure_normalisation, train_model

BATCH_SIZE = 4
# Odd on purpose: split across two ranks it leaves one window over, which must not
# give one rank an extra batch (DDP would wait forever for the other).
WINDOWS_PER_EPOCH = 81


def main(root: Path, out: Path) -> None:
    config = load_config(
        None,
        [
            f"data.root={root}",
            f"output_dir={out}",
            "data.train_hop_ms=500",
            "model.channels=[8, 16]",
            "model.embedding_dim=16",
            "model.dropout=0.0",
            "optim.epochs=3",
            f"optim.batch_size={BATCH_SIZE}",
            "optim.learning_rate=0.01",
            "optim.patience_epochs=10",
            "num_threads=1",
            f"optim.max_windows_per_epoch={WINDOWS_PER_EPOCH}",
        ],
    )
    labels = list_labels(root, "train")
    train = load_split(
        root, "train", labels, sample_rate_hz=16_000, window_samples=48_000, hop_samples=8_000
    )
    val = load_split(
        root, "val", labels, sample_rate_hz=16_000, window_samples=48_000, hop_samples=24_000
    )
    mean, std = measure_normalisation(config, train, FrontEndConfig())
    front_end = config.front_end.build(16_000, mean, std)
    result = train_model(config, train, val, labels, front_end)
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return
    checkpoint = torch.load(checkpoint_path(config), map_location="cpu", weights_only=False)
    summary = {
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "steps": checkpoint["step"],
        "val_accuracy": [epoch.val_accuracy for epoch in result.history],
    }
    (out / "result.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
