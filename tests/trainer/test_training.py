"""The training loop learns, is deterministic, and resumes exactly from its checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mozart_trainer.config import TrainConfig
from mozart_trainer.training import (
    EpochSummary,
    checkpoint_path,
)
from tests.trainer.synthetic_training import small_config, train_small


def _config(root: Path, out: Path, epochs: int) -> TrainConfig:
    return small_config(
        root,
        out,
        f"optim.epochs={epochs}",
        "optim.batch_size=8",
        # Every augmentation on, so resume must restore all their randomness.
        "augment.mixup_alpha=0.2",
        "augment.eq_db=12",
    )


class _InterruptedError(Exception):
    """Stands in for a crash or Ctrl-C after an epoch's checkpoint is written."""


def _interrupt(summary: EpochSummary) -> None:
    raise _InterruptedError(summary.epoch)


def _run(root: Path, out: Path, epochs: int, resume: bool = False, on_epoch=None):
    return train_small(_config(root, out, epochs), resume=resume, on_epoch=on_epoch)


def test_learns_deterministically_and_resumes_exactly(
    synthetic_corpus: Path, tmp_path: Path
) -> None:
    straight = _run(synthetic_corpus, tmp_path / "straight", epochs=2)
    assert straight.history[-1].val_accuracy >= 0.9
    # A separate run interrupted after one epoch, then resumed from its checkpoint,
    # must end bit-identical: this proves both seeding and exact resume.
    with pytest.raises(_InterruptedError):
        _run(synthetic_corpus, tmp_path / "split", epochs=2, on_epoch=_interrupt)
    assert checkpoint_path(_config(synthetic_corpus, tmp_path / "split", 2)).is_file()
    resumed = _run(synthetic_corpus, tmp_path / "split", epochs=2, resume=True)
    assert [h.epoch for h in resumed.history] == [1, 2]
    assert [h.train_loss for h in resumed.history] == [h.train_loss for h in straight.history]
    for name, tensor in straight.model.state_dict().items():
        torch.testing.assert_close(tensor, resumed.model.state_dict()[name], rtol=0, atol=0)
