"""The log-mel front end that lives inside the model and therefore inside the ONNX graph.

Only Conv, Mul, Add, MatMul, Clip and Log: these run on every ONNX Runtime
provider and every TensorRT version, whereas ONNX's STFT/DFT operators do not.
The STFT is a strided Conv1d whose fixed weights are the Hann-windowed DFT basis
(``center=False``, so a stream can compute the frames of new audio only). All
constants are fixed at construction; nothing depends on the input, so export
bakes in nothing surprising.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn


@dataclass(frozen=True)
class FrontEndConfig:
    """Parameters of the log-mel front end; written to model.json as ``front_end``."""

    sample_rate_hz: int = 16_000
    n_fft: int = 512
    hop_length: int = 320
    win_length: int = 512
    n_mels: int = 64
    f_min_hz: float = 50.0
    f_max_hz: float = 8_000.0
    log_floor: float = 1e-6
    norm_mean: float = 0.0
    norm_std: float = 1.0

    def n_frames(self, window_samples: int) -> int:
        """Number of STFT frames for a window (``center=False``)."""
        return 1 + (window_samples - self.n_fft) // self.hop_length

    def to_manifest(self) -> dict[str, Any]:
        """The ``front_end`` object of model.json."""
        fields = asdict(self)
        fields.pop("sample_rate_hz")
        return {**fields, "center": False}


def _hz_to_mel(hz: NDArray[np.float64]) -> NDArray[np.float64]:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's default)."""
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    log_step = math.log(6.4) / 27.0
    mel = hz / f_sp
    above = hz >= min_log_hz
    mel[above] = min_log_mel + np.log(hz[above] / min_log_hz) / log_step
    return mel


def _mel_to_hz(mel: NDArray[np.float64]) -> NDArray[np.float64]:
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    log_step = math.log(6.4) / 27.0
    hz = mel * f_sp
    above = mel >= min_log_mel
    hz[above] = min_log_hz * np.exp(log_step * (mel[above] - min_log_mel))
    return hz


def mel_filterbank(config: FrontEndConfig) -> NDArray[np.float64]:
    """Slaney-normalised triangular mel filters, shape ``[n_mels, n_fft // 2 + 1]``.

    Written here because librosa is only a dev dependency; a test checks it
    against ``librosa.filters.mel``.
    """
    n_freqs = config.n_fft // 2 + 1
    fft_hz = np.linspace(0.0, config.sample_rate_hz / 2.0, n_freqs)
    mel_edges = np.linspace(
        _hz_to_mel(np.array([config.f_min_hz]))[0],
        _hz_to_mel(np.array([config.f_max_hz]))[0],
        config.n_mels + 2,
    )
    hz_edges = _mel_to_hz(mel_edges)
    widths = np.diff(hz_edges)
    ramps = hz_edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]
    return weights


def dft_basis(config: FrontEndConfig) -> NDArray[np.float64]:
    """Hann-windowed real DFT basis as Conv1d weights, ``[2 * n_freqs, 1, n_fft]``.

    The first ``n_freqs`` rows give the real part, the rest the imaginary part.
    """
    n = np.arange(config.n_fft)
    # Periodic Hann, centred inside n_fft when win_length is shorter (as librosa pads it).
    window = np.zeros(config.n_fft)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(config.win_length) / config.win_length)
    offset = (config.n_fft - config.win_length) // 2
    window[offset : offset + config.win_length] = hann
    freqs = np.arange(config.n_fft // 2 + 1)
    angle = 2.0 * np.pi * np.outer(freqs, n) / config.n_fft
    real = np.cos(angle) * window
    imag = -np.sin(angle) * window
    return np.concatenate([real, imag])[:, None, :]


class LogMelFrontEnd(nn.Module):
    """Waveform ``[batch, samples]`` -> normalised log-mel ``[batch, 1, n_mels, frames]``."""

    mel_basis: torch.Tensor

    def __init__(self, config: FrontEndConfig) -> None:
        super().__init__()
        self.config = config
        self.n_freqs = config.n_fft // 2 + 1
        self.stft = nn.Conv1d(
            1, 2 * self.n_freqs, kernel_size=config.n_fft, stride=config.hop_length, bias=False
        )
        self.stft.weight.data.copy_(torch.from_numpy(dft_basis(config)).float())
        self.stft.weight.requires_grad_(False)
        self.register_buffer("mel_basis", torch.from_numpy(mel_filterbank(config).T.copy()).float())

    def mel_power(self, waveform: torch.Tensor) -> torch.Tensor:
        """Mel power spectrogram ``[batch, n_mels, frames]`` (before the log)."""
        spectrum = self.stft(waveform.unsqueeze(1))
        real, imag = spectrum[:, : self.n_freqs], spectrum[:, self.n_freqs :]
        power = real * real + imag * imag
        return torch.matmul(power.transpose(1, 2), self.mel_basis).transpose(1, 2)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel features with a channel axis for the CNN."""
        log_mel = torch.log(torch.clamp(self.mel_power(waveform), min=self.config.log_floor))
        normalised = (log_mel - self.config.norm_mean) / self.config.norm_std
        return normalised.unsqueeze(1)
