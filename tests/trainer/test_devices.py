"""Training off the single-process CPU path: two DDP ranks under torchrun, and CUDA.

The DDP test runs here (gloo on the CPU). The CUDA test is skipped without an
NVIDIA GPU; it is run on a lent GPU machine when one is available.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.trainer.distributed_run import BATCH_SIZE, EPOCHS, WINDOWS_PER_EPOCH

WORKER = Path(__file__).with_name("distributed_run.py")
ROOT = Path(__file__).resolve().parents[2]


def _torchrun(ranks: int, corpus: Path, out: Path, env: dict[str, str]) -> dict[str, Any]:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={ranks}",
            str(WORKER),
            str(corpus),
            str(out),
        ],
        capture_output=True,
        text=True,
        # The worker imports tests.trainer.synthetic_training from the repository root.
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    return result


@pytest.mark.slow
def test_two_ranks_share_each_epoch_and_learn(synthetic_corpus: Path, tmp_path: Path) -> None:
    result = _torchrun(2, synthetic_corpus, tmp_path, {"CUDA_VISIBLE_DEVICES": ""})
    assert result["device"] == "cpu"
    # Each rank takes every other window (the odd one out is dropped), so both ranks
    # run the same number of batches: half the single-rank steps.
    assert result["steps"] == EPOCHS * math.ceil((WINDOWS_PER_EPOCH // 2) / BATCH_SIZE)
    assert result["val_accuracy"][-1] >= 0.9


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_trains_on_cuda(synthetic_corpus: Path, tmp_path: Path) -> None:
    result = _torchrun(1, synthetic_corpus, tmp_path, {})
    assert result["device"] == "cuda"
    assert result["steps"] == EPOCHS * math.ceil(WINDOWS_PER_EPOCH / BATCH_SIZE)
    assert result["val_accuracy"][-1] >= 0.9
