"""The training loop: AdamW, warm-up + cosine schedule, early stopping, checkpoints with resume.

Seeded and deterministic on CPU: the epoch's window order and augmentation
draw from generators seeded by (seed, epoch), so a resumed run continues exactly
where it stopped. DDP-ready: under ``torchrun`` (``WORLD_SIZE`` > 1) each rank
trains its shard of the epoch and gradients are averaged; only rank 0 validates,
checkpoints and logs. Only the single-process CPU path is exercised here.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional
from tqdm import tqdm  # type: ignore[import-untyped]

from mozart_trainer.augment import augment_waveform, mixup, random_eq, spec_augment
from mozart_trainer.config import TrainConfig
from mozart_trainer.corpus import Split
from mozart_trainer.evaluate import predict, window_metrics
from mozart_trainer.frontend import FrontEndConfig, LogMelFrontEnd
from mozart_trainer.model import AudioCNN

logger = logging.getLogger(__name__)

NORM_SAMPLE_WINDOWS = 512


@dataclass(frozen=True)
class EpochSummary:
    """What one epoch did; logged to MLflow and printed."""

    epoch: int
    steps: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    val_macro_f1: float
    learning_rate: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    """The best model (by validation macro-F1) and the history that led to it."""

    model: AudioCNN
    best_epoch: int
    history: tuple[EpochSummary, ...]


EpochCallback = Callable[[EpochSummary], None]


def seed_everything(seed: int) -> None:
    """Seeds torch and numpy and asks torch for deterministic kernels."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def pick_device() -> torch.device:
    """CUDA when present (one GPU per rank under torchrun), otherwise CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Joins the torchrun process group when there is one; returns (rank, world size)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def measure_normalisation(
    config: TrainConfig, train: Split, front_end: FrontEndConfig
) -> tuple[float, float]:
    """Mean and std of the unnormalised log-mel over a seeded sample of training windows."""
    rng = np.random.default_rng(config.seed)
    count = min(NORM_SAMPLE_WINDOWS, train.n_windows)
    indices = np.sort(rng.choice(train.n_windows, size=count, replace=False))
    raw = LogMelFrontEnd(front_end)
    with torch.no_grad():
        features = raw(torch.from_numpy(train.windows(indices, config.data.window_samples)))
    return float(features.mean()), float(features.std())


def draw_starts(
    split: Split, indices: np.ndarray, window_samples: int, jitter: bool, rng: np.random.Generator
) -> Split:
    """A view of the split whose chosen windows start up to half a window earlier or later."""
    starts = split.window_start.copy()
    if jitter:
        for index in indices:
            length = len(split.waveforms[split.window_work[index]])
            shift = int(rng.integers(-window_samples // 2, window_samples // 2 + 1))
            starts[index] = int(np.clip(starts[index] + shift, 0, max(0, length - window_samples)))
    return Split(
        name=split.name,
        works=split.works,
        groups=split.groups,
        waveforms=split.waveforms,
        work_labels=split.work_labels,
        window_work=split.window_work,
        window_start=starts,
    )


class _Body(nn.Module):
    """The CNN without its fixed front end: what DDP wraps (augmentation sits in between)."""

    def __init__(self, model: AudioCNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and embedding."""
        return self.model.body(log_mel)


def _schedule(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _loss(model: AudioCNN, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if model.task == "multiclass":
        return functional.cross_entropy(logits, targets)
    return functional.binary_cross_entropy_with_logits(logits, targets)


def checkpoint_path(config: TrainConfig) -> Path:
    """Where a run of this config name keeps its resumable checkpoint."""
    return config.output_dir / config.name / "last.pt"


@dataclass
class _Progress:
    """Mutable loop state, saved in every checkpoint so a resumed run continues exactly."""

    epoch: int = 0
    step: int = 0
    best_f1: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[EpochSummary] = field(default_factory=list)


class _Trainer:
    """Owns the model, optimizer and schedule of one training run."""

    def __init__(
        self, config: TrainConfig, train: Split, labels: list[str], front_end: FrontEndConfig
    ) -> None:
        self.config = config
        self.train = train
        self.labels = labels
        self.front_end = front_end
        self.device = pick_device()
        self.rank, self.world_size = init_distributed(self.device)
        optim = config.optim
        self.model = AudioCNN(len(labels), config.task, front_end, config.model.build())
        self.model.to(self.device)
        self.trainable: nn.Module = _Body(self.model)
        if self.world_size > 1:
            self.trainable = nn.parallel.DistributedDataParallel(self.trainable)
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=optim.learning_rate,
            weight_decay=optim.weight_decay,
        )
        self.windows_per_epoch = min(
            train.n_windows, optim.max_windows_per_epoch or train.n_windows
        )
        steps_per_epoch = math.ceil(self.windows_per_epoch // self.world_size / optim.batch_size)
        total_steps = steps_per_epoch * optim.epochs
        if optim.max_steps is not None:
            total_steps = min(total_steps, optim.max_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _schedule(total_steps, optim.warmup_fraction)
        )
        self.targets = torch.eye(len(labels))[torch.from_numpy(train.window_labels)]
        self.progress = _Progress()
        self.best_state = self._copy_state()

    def _copy_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def out_of_steps(self) -> bool:
        """Whether ``optim.max_steps`` is reached."""
        max_steps = self.config.optim.max_steps
        return max_steps is not None and self.progress.step >= max_steps

    def train_epoch(self, epoch: int) -> float:
        """One pass over the epoch's windows; returns the mean training loss."""
        config, optim = self.config, self.config.optim
        window_samples = config.data.window_samples
        rng = np.random.default_rng([config.seed, epoch])
        generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        order = rng.permutation(self.train.n_windows)[: self.windows_per_epoch]
        # Every rank must run the same number of batches, or DDP's gradient
        # all-reduce waits forever: drop the windows that do not divide evenly.
        order = order[: len(order) - len(order) % self.world_size][self.rank :: self.world_size]
        jittered = draw_starts(self.train, order, window_samples, config.augment.time_shift, rng)
        self.model.train()
        losses: list[float] = []
        batches = tqdm(
            range(0, len(order), optim.batch_size),
            desc=f"epoch {epoch + 1}/{optim.epochs}",
            disable=self.rank != 0,
        )
        for offset in batches:
            if self.out_of_steps():
                break
            batch = order[offset : offset + optim.batch_size]
            waveform = torch.from_numpy(jittered.windows(batch, window_samples))
            waveform = augment_waveform(waveform, config.augment, generator).to(self.device)
            targets = self.targets[torch.from_numpy(batch)].to(self.device)
            with torch.no_grad():
                log_mel = self.model.front_end(waveform)
            log_mel = random_eq(log_mel, config.augment, self.front_end.norm_std, generator)
            log_mel = spec_augment(log_mel, config.augment, generator)
            log_mel, targets = mixup(log_mel, targets, config.augment.mixup_alpha, generator)
            logits, _ = self.trainable(log_mel)
            loss = _loss(self.model, logits, targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            self.optimizer.step()
            self.scheduler.step()
            self.progress.step += 1
            losses.append(float(loss.detach()))
            batches.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        return float(np.mean(losses)) if losses else float("nan")

    def validate(self, val: Split, epoch: int, train_loss: float, seconds: float) -> EpochSummary:
        """Scores the validation split and keeps the best weights by macro-F1."""
        n_labels = len(self.labels)
        val_probs, val_logits, _ = predict(self.model, val, self.config.data.window_samples)
        val_targets = torch.eye(n_labels)[torch.from_numpy(val.window_labels)]
        val_loss = float(_loss(self.model, torch.from_numpy(val_logits), val_targets))
        metrics = window_metrics(val_probs, val.window_labels, n_labels)
        summary = EpochSummary(
            epoch=epoch + 1,
            steps=self.progress.step,
            train_loss=train_loss,
            val_loss=val_loss,
            val_accuracy=metrics.accuracy,
            val_macro_f1=metrics.macro_f1,
            learning_rate=float(self.scheduler.get_last_lr()[0]),
            seconds=seconds,
        )
        progress = self.progress
        progress.history.append(summary)
        progress.epoch = epoch
        if summary.val_macro_f1 > progress.best_f1:
            progress.best_f1, progress.best_epoch = summary.val_macro_f1, summary.epoch
            progress.bad_epochs = 0
            self.best_state = self._copy_state()
        else:
            progress.bad_epochs += 1
        return summary

    def save(self, path: Path, run_id: str) -> None:
        """Writes a resumable checkpoint that `mozart export` can also read."""
        path.parent.mkdir(parents=True, exist_ok=True)
        progress = asdict(self.progress)
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "best_model": self.best_state,
                **progress,
                "front_end": asdict(self.front_end),
                "labels": self.labels,
                "mlflow_run_id": run_id,
                "config": self.config.model_dump(mode="json"),
            },
            path,
        )

    def load(self, path: Path) -> None:
        """Restores a checkpoint written by `save`."""
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.best_state = state["best_model"]
        self.progress = _Progress(
            epoch=state["epoch"],
            step=state["step"],
            best_f1=state["best_f1"],
            best_epoch=state["best_epoch"],
            bad_epochs=state["bad_epochs"],
            history=[EpochSummary(**row) for row in state["history"]],
        )

    def agree(self, stop: bool) -> bool:
        """Rank 0's early-stopping decision, shared with every rank."""
        if self.world_size == 1:
            return stop
        flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
        dist.broadcast(flag, src=0)
        return bool(flag.item())


def train_model(
    config: TrainConfig,
    train: Split,
    val: Split,
    labels: list[str],
    front_end: FrontEndConfig,
    *,
    resume: bool = False,
    on_epoch: EpochCallback | None = None,
    run_id: str = "",
) -> TrainResult:
    """Trains the CNN and returns the best model by validation macro-F1.

    Args:
        config: the validated training configuration.
        train: training split (windows are drawn from it with jitter).
        val: validation split, used for early stopping.
        labels: label names in output order (stored in the checkpoints).
        front_end: front-end configuration including the measured normalisation.
        resume: continue from the last checkpoint of this run name when one exists.
        on_epoch: called after every epoch on rank 0 (MLflow logging, Optuna pruning).
        run_id: the MLflow run, recorded in checkpoints for `mozart export`.
    """
    seed_everything(config.seed)
    if torch.get_num_threads() != config.num_threads:
        torch.set_num_threads(config.num_threads)
    trainer = _Trainer(config, train, labels, front_end)
    last_path = checkpoint_path(config)
    start_epoch = 0
    if resume and last_path.is_file():
        trainer.load(last_path)
        start_epoch = trainer.progress.epoch + 1
        logger.info("resumed", extra={"epoch": start_epoch})
    for epoch in range(start_epoch, config.optim.epochs):
        if trainer.out_of_steps():
            break
        started = time.monotonic()
        train_loss = trainer.train_epoch(epoch)
        stop = False
        if trainer.rank == 0:
            summary = trainer.validate(val, epoch, train_loss, time.monotonic() - started)
            print(
                f"epoch {summary.epoch}: train_loss={summary.train_loss:.4f} "
                f"val_loss={summary.val_loss:.4f} val_acc={summary.val_accuracy:.4f} "
                f"val_f1={summary.val_macro_f1:.4f} lr={summary.learning_rate:.2e} "
                f"({summary.seconds:.0f}s)"
            )
            logger.info("epoch", extra=asdict(summary))
            trainer.save(last_path, run_id)
            if on_epoch is not None:
                on_epoch(summary)
            stop = trainer.progress.bad_epochs >= config.optim.patience_epochs
        if trainer.agree(stop):
            logger.info("early stop", extra={"epoch": epoch + 1})
            break
    model = trainer.model
    model.load_state_dict(trainer.best_state)
    model.eval()
    return TrainResult(
        model=model.cpu(),
        best_epoch=trainer.progress.best_epoch,
        history=tuple(trainer.progress.history),
    )
