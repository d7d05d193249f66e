"""Training configuration: a YAML file validated by pydantic, with ``--set key=value`` overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from mozart_trainer.frontend import FrontEndConfig
from mozart_trainer.model import ModelConfig


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataSettings(_Frozen):
    """Where the dataset is and how windows are cut from it."""

    root: Path = Field(
        default=Path("data/corpus/default"), description="dataset root (split folders)"
    )
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = Field(default="test", description="held-out split reported on the model card")
    extra_eval_splits: tuple[str, ...] = Field(
        default=(), description="further evaluation slices, e.g. the timbre-held-out split"
    )
    sample_rate_hz: int = 16_000
    window_samples: int = 48_000
    train_hop_ms: int = Field(default=750, description="hop between training windows (overlap)")
    eval_hop_ms: int = Field(default=1_500, description="hop between evaluation windows")
    default_hop_ms: int = Field(default=1_500, description="serving hop written to model.json")


class FrontEndSettings(_Frozen):
    """Log-mel front end; the normalisation is measured on the training split.

    Defaults are FrontEndConfig's, so the two cannot drift apart.
    """

    n_fft: int = FrontEndConfig.n_fft
    hop_length: int = FrontEndConfig.hop_length
    win_length: int = FrontEndConfig.win_length
    n_mels: int = FrontEndConfig.n_mels
    f_min_hz: float = FrontEndConfig.f_min_hz
    f_max_hz: float = FrontEndConfig.f_max_hz
    log_floor: float = FrontEndConfig.log_floor

    def build(self, sample_rate_hz: int, norm_mean: float, norm_std: float) -> FrontEndConfig:
        """The front end's frozen configuration."""
        return FrontEndConfig(
            sample_rate_hz=sample_rate_hz,
            norm_mean=norm_mean,
            norm_std=norm_std,
            **self.model_dump(),
        )


class ModelSettings(_Frozen):
    """CNN body size."""

    channels: tuple[int, ...] = (16, 32, 64, 128)
    embedding_dim: int = 128
    dropout: float = 0.2

    def build(self) -> ModelConfig:
        """The model's frozen configuration."""
        return ModelConfig(**self.model_dump())


class AugmentSettings(_Frozen):
    """Waveform and spectrogram augmentation applied to training batches only."""

    gain_db: float = Field(default=6.0, description="random gain in +/- this many dB")
    time_shift: bool = Field(default=True, description="jitter each window's start within its work")
    noise_snr_db: tuple[float, float] = Field(
        default=(20.0, 40.0), description="white-noise SNR range"
    )
    freq_mask_bands: int = Field(default=8, description="SpecAugment: widest frequency mask")
    time_mask_frames: int = Field(default=20, description="SpecAugment: widest time mask")
    mixup_alpha: float = Field(default=0.0, description="0 disables mixup")
    eq_db: float = Field(
        default=0.0, description="scale of a random smooth EQ over mel bands, dB; 0 disables"
    )


class OptimSettings(_Frozen):
    """AdamW with linear warm-up and cosine decay; early stopping on validation macro-F1."""

    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 1e-2
    warmup_fraction: float = 0.05
    patience_epochs: int = 5
    max_steps: int | None = Field(
        default=None, description="stop after this many steps (smoke runs)"
    )
    max_windows_per_epoch: int | None = Field(
        default=None, description="subsample training windows"
    )


class TrackingSettings(_Frozen):
    """MLflow tracking and registry."""

    tracking_uri: str | None = Field(
        default=None,
        description="None: MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlruns/mlflow.db",
    )
    experiment: str = "mozart"
    registered_model: str = "composer-cnn"
    promote_metric: Literal["best_val_macro_f1"] = Field(
        default="best_val_macro_f1",
        description=(
            "validation metric that decides whether a run becomes champion (higher wins); "
            "the test split is reported, never used to choose"
        ),
    )


class TrainConfig(_Frozen):
    """Everything `mozart train` needs."""

    name: str = "composer-cnn"
    task: Literal["multiclass", "multilabel"] = "multiclass"
    seed: int = 1234
    num_threads: int = Field(default=2, description="torch intra-op threads on CPU")
    output_dir: Path = Field(
        default=Path("mlruns/checkpoints"), description="checkpoints and reports"
    )
    export_dir: Path | None = Field(
        default=None,
        description=(
            "model repository `mozart train --publish` writes the next version into "
            "(e.g. models); without --publish nothing is written there"
        ),
    )
    export_version: int = Field(
        default=1, description="version written into the run's model.json; publish renumbers it"
    )
    data: DataSettings = DataSettings()
    front_end: FrontEndSettings = FrontEndSettings()
    model: ModelSettings = ModelSettings()
    augment: AugmentSettings = AugmentSettings()
    optim: OptimSettings = OptimSettings()
    tracking: TrackingSettings = TrackingSettings()


def _set_dotted(tree: dict[str, Any], dotted_key: str, value: Any) -> None:
    keys = dotted_key.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ValueError(f"override {dotted_key}: {key} is not a section")
        node = child
    node[keys[-1]] = value


def load_config(path: Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Loads a YAML config and applies ``section.key=value`` overrides (values parsed as YAML).

    Raises:
        ValueError: an override is not ``key=value``, or the result does not validate.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
        tree = loaded or {}
    for override in overrides or []:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise ValueError(f"override {override!r} is not key=value")
        _set_dotted(tree, key.strip(), yaml.safe_load(raw))
    return TrainConfig.model_validate(tree)
