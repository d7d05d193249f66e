"""One rank of a `torchrun` training run on the synthetic corpus (driven by test_devices.py).

Usage: torchrun --nproc_per_node N tests/trainer/distributed_run.py CORPUS OUT
Rank 0 writes OUT/result.json with the epoch history and the step count it reached.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from mozart_trainer.training import checkpoint_path
from tests.trainer.synthetic_training import small_config, train_small

EPOCHS = 3
BATCH_SIZE = 4
# Odd on purpose: split across two ranks it leaves one window over, which must not
# give one rank an extra batch (DDP would wait forever for the other).
WINDOWS_PER_EPOCH = 81


def main(root: Path, out: Path) -> None:
    config = small_config(
        root,
        out,
        f"optim.epochs={EPOCHS}",
        f"optim.batch_size={BATCH_SIZE}",
        f"optim.max_windows_per_epoch={WINDOWS_PER_EPOCH}",
        "num_threads=1",
    )
    result = train_small(config)
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
