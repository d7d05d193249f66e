"""What a version folder can be served from: `model.onnx` and what `mozart optimize` admitted.

`model.json` lists each optimized artifact under `artifacts` with the figures its gates
admitted it on (docs/model-repository.md). `model.onnx` is always there and is the FP32
reference the figures are ratios to, so it is never listed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

REFERENCE_FILE = "model.onnx"
ONNXRUNTIME = "onnxruntime"
TENSORRT = "tensorrt"


class BatchProfile(BaseModel):
    """The batch sizes an artifact was built for (TensorRT's min/opt/max profile)."""

    model_config = ConfigDict(frozen=True)

    min: int = Field(ge=1)
    opt: int = Field(ge=1)
    max: int = Field(ge=1)


class SpeedFigures(BaseModel):
    """Speed against the FP32 reference, measured in one run on one machine."""

    model_config = ConfigDict(frozen=True, extra="allow")

    batch1_latency_ratio: float = Field(gt=0, description="FP32 batch-1 latency / this one's.")
    best_throughput_ratio: float = Field(
        gt=0, description="This artifact's best windows/s over FP32's best windows/s."
    )


class Artifact(BaseModel):
    """One file a version can be served from, and what it needs to run."""

    model_config = ConfigDict(frozen=True, extra="allow")

    file: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    kind: Literal["onnxruntime", "tensorrt"]
    precision: Literal["fp32", "fp16", "int8"]
    provider: str = Field(description="ORT execution provider, or 'tensorrt' for a plan.")
    batch_profile: BatchProfile | None = None
    speed: SpeedFigures | None = None
    sha256: str | None = None
    accuracy: dict[str, Any] = Field(default_factory=dict)
    tools: dict[str, str] = Field(default_factory=dict)
    device: dict[str, str] = Field(
        default_factory=dict, description="The GPU and its compute capability, for plans."
    )

    @property
    def throughput_ratio(self) -> float:
        """Best throughput relative to FP32 (1.0 for the reference)."""
        return self.speed.best_throughput_ratio if self.speed else 1.0

    def check_file(self, version_path: Path) -> Path:
        """The artifact's path, after checking it exists and has the recorded digest.

        Raises:
            FileNotFoundError, ValueError: the file is missing or not the one admitted.
        """
        path = version_path / self.file
        if not path.is_file():
            raise FileNotFoundError(f"{path} is listed in model.json but missing")
        if self.sha256 is not None and file_sha256(path) != self.sha256:
            raise ValueError(f"{path} is not the file its gates admitted (sha256 differs)")
        return path


REFERENCE = Artifact(
    file=REFERENCE_FILE, kind="onnxruntime", precision="fp32", provider="CPUExecutionProvider"
)


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
