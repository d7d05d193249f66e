"""The audio CNN: waveform in, log-mel front end, a compact conv body, softmax or sigmoid head.

The body is a slim CNN6-style stack (PANNs): four blocks of 3x3 conv, batch norm,
ReLU and 2x2 average pooling, then mean+max pooling over time only, so the
embedding still knows which of the remaining mel bands the energy is in (pitch
and register carry much of a composer's style; pooling frequency away lost it).
It is sized for CPU training on two cores within the `make train` budget; the
front end's STFT is a large share of its MACs, which is why the hop is 20 ms.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from mozart_trainer.frontend import FrontEndConfig, LogMelFrontEnd

Task = Literal["multiclass", "multilabel"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the CNN body and heads."""

    channels: tuple[int, ...] = (16, 32, 64, 128)
    embedding_dim: int = 128
    dropout: float = 0.2


class ConvBlock(nn.Module):
    """3x3 conv -> batch norm -> ReLU -> 2x2 average pool."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        self.pool = nn.AvgPool2d(2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Applies the block."""
        pooled: torch.Tensor = self.pool(torch.relu(self.norm(self.conv(features))))
        return pooled


class AudioCNN(nn.Module):
    """Waveform ``[batch, samples]`` -> ``(probabilities, logits, embedding)``."""

    def __init__(
        self,
        n_labels: int,
        task: Task,
        front_end: FrontEndConfig,
        config: ModelConfig,
    ) -> None:
        super().__init__()
        self.task: Task = task
        self.front_end = LogMelFrontEnd(front_end)
        channels = (1, *config.channels)
        self.blocks = nn.Sequential(
            *(ConvBlock(c_in, c_out) for c_in, c_out in itertools.pairwise(channels))
        )
        bands = front_end.n_mels
        for _ in config.channels:
            bands //= 2
        if bands < 1:
            raise ValueError(f"{len(config.channels)} pooling blocks leave no mel bands")
        self.embed = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(channels[-1] * bands, config.embedding_dim),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(config.embedding_dim, n_labels)
        )

    def body(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel ``[batch, 1, mels, frames]`` -> ``(logits, embedding)``."""
        features = self.blocks(log_mel)
        # Pool over time only: where energy sits in frequency (pitch, register) matters.
        pooled = features.mean(dim=3) + features.amax(dim=3)
        embedding: torch.Tensor = self.embed(pooled.flatten(1))
        logits: torch.Tensor = self.classifier(embedding)
        return logits, embedding

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax for one label per window, sigmoid for several."""
        if self.task == "multiclass":
            return torch.softmax(logits, dim=-1)
        return torch.sigmoid(logits)

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Classifies windows of raw mono waveform at the front end's sample rate."""
        logits, embedding = self.body(self.front_end(waveform))
        return self.scores(logits), logits, embedding


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (the fixed DFT basis does not count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def macs_per_window(model: AudioCNN, window_samples: int) -> int:
    """Multiply-accumulates for one window, counted from the conv and linear layers' shapes."""
    total = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv1d | nn.Conv2d):
            kernel = int(torch.tensor(module.weight.shape[1:]).prod())
            total += kernel * output.numel()
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features
        del inputs

    handles = [m.register_forward_hook(count) for m in model.modules()]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        mel_basis = model.front_end.mel_basis
        model(torch.zeros(1, window_samples))
    for handle in handles:
        handle.remove()
    model.train(was_training)
    frames = model.front_end.config.n_frames(window_samples)
    total += frames * mel_basis.numel()  # the mel MatMul
    return total
