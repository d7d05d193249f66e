"""model.json manifests: reading and validating one, and checking it against the graph."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mozart_server.engines.artifacts import Artifact
from mozart_server.errors import ModelLoadError
from mozart_server.models.repository import VersionDir
from mozart_server.tensors import TensorSpec

MANIFEST_FILE = "model.json"
REQUIRED_OUTPUTS = ("probabilities", "logits", "embedding")


class SilenceThreshold(BaseModel):
    """Windows quieter than `rms_dbfs` are silent: flagged and not classified."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    rms_dbfs: float = Field(le=0.0)


class ConfidenceThreshold(BaseModel):
    """Windows whose best raw score is below `min_top_score` are low-confidence."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    min_top_score: float = Field(ge=0.0, le=1.0)


class ResultThresholds(BaseModel):
    """model.json `result_thresholds`: how results are flagged (docs/model-repository.md).

    Each part is optional; the keys beside the threshold (how it was chosen, what it
    buys) are for people and are not read.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    silence: SilenceThreshold | None = None
    low_confidence: ConfidenceThreshold | None = None


class Manifest(BaseModel):
    """The fields of model.json the server reads (docs/model-repository.md)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1]
    name: str
    version: str
    task: Literal["multiclass", "multilabel"]
    labels: tuple[str, ...] = Field(min_length=1)
    sample_rate_hz: int = Field(ge=1000, le=192_000)
    window_samples: int = Field(ge=1)
    default_hop_ms: int = Field(ge=1)
    inputs: tuple[TensorSpec, ...] = Field(min_length=1)
    outputs: tuple[TensorSpec, ...] = Field(min_length=1)
    #: What `mozart optimize` admitted beside model.onnx (engines/artifacts.py).
    artifacts: tuple[Artifact, ...] = ()
    #: The training data's statistics and the front end that made them, as model.json
    #: holds them; the drift statistics read and check them (observability/drift.py).
    reference_stats: dict[str, Any] = Field(default_factory=dict)
    front_end: dict[str, Any] = Field(default_factory=dict)
    #: Silence and low-confidence thresholds; a manifest without them flags nothing.
    result_thresholds: ResultThresholds | None = None

    @property
    def window_ms(self) -> int:
        """Window length in milliseconds, rounded down."""
        return self.window_samples * 1000 // self.sample_rate_hz


def read_manifest(version_dir: VersionDir) -> Manifest:
    """Reads and validates model.json of one version.

    Raises:
        ModelLoadError: with the reason, when the manifest is missing or invalid.
    """
    manifest_path = version_dir.path / MANIFEST_FILE
    try:
        manifest = Manifest.model_validate(json.loads(manifest_path.read_text()))
    except FileNotFoundError as error:
        raise ModelLoadError(f"{manifest_path} is missing") from error
    except (json.JSONDecodeError, ValidationError) as error:
        raise ModelLoadError(f"{manifest_path} is invalid: {error}") from error
    if (manifest.name, manifest.version) != (version_dir.name, version_dir.version):
        raise ModelLoadError(
            f"{manifest_path} names {manifest.name}/{manifest.version}, "
            f"but it lies in {version_dir.name}/{version_dir.version}"
        )
    return manifest


def check_against_graph(
    manifest: Manifest, graph_inputs: Sequence[TensorSpec], graph_outputs: Sequence[TensorSpec]
) -> None:
    """Checks that the manifest's inputs and outputs match the ONNX graph's.

    Dynamic graph dimensions (-1) match any manifest value at that axis.

    Raises:
        ModelLoadError: naming the first mismatch.
    """
    _check_specs("input", manifest.inputs, graph_inputs)
    _check_specs("output", manifest.outputs, graph_outputs)
    waveform = manifest.inputs[0]
    if len(manifest.inputs) != 1 or waveform.dtype != "float32" or len(waveform.shape) != 2:
        raise ModelLoadError("the model must take one float32 input of shape [-1, window_samples]")
    if waveform.shape[1] != manifest.window_samples:
        raise ModelLoadError(
            f"input {waveform.name!r} has {waveform.shape[1]} samples per window, "
            f"but window_samples is {manifest.window_samples}"
        )
    names = {spec.name for spec in manifest.outputs}
    missing = [name for name in REQUIRED_OUTPUTS if name not in names]
    if missing:
        raise ModelLoadError(f"the model lacks the outputs {missing}")
    for name in ("probabilities", "logits"):
        spec = next(spec for spec in manifest.outputs if spec.name == name)
        if spec.shape[-1] != len(manifest.labels):
            raise ModelLoadError(
                f"output {name!r} has {spec.shape[-1]} scores but the manifest has "
                f"{len(manifest.labels)} labels"
            )


def _check_specs(kind: str, declared: Sequence[TensorSpec], graph: Sequence[TensorSpec]) -> None:
    by_name = {spec.name: spec for spec in graph}
    for spec in declared:
        actual = by_name.get(spec.name)
        if actual is None:
            raise ModelLoadError(
                f"manifest {kind} {spec.name!r} is not in the graph (graph has {sorted(by_name)})"
            )
        if actual.dtype != spec.dtype:
            raise ModelLoadError(
                f"{kind} {spec.name!r} is {actual.dtype} in the graph, {spec.dtype} in the manifest"
            )
        if len(actual.shape) != len(spec.shape) or any(
            graph_dim not in (-1, declared_dim)
            for graph_dim, declared_dim in zip(actual.shape, spec.shape, strict=True)
        ):
            raise ModelLoadError(
                f"{kind} {spec.name!r} has shape {list(actual.shape)} in the graph, "
                f"{list(spec.shape)} in the manifest"
            )
    extra = set(by_name) - {spec.name for spec in declared}
    if kind == "input" and extra:
        raise ModelLoadError(f"graph inputs {sorted(extra)} are not in the manifest")
