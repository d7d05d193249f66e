"""Optimized artifacts for a test model version: a real static INT8 (QDQ) copy of model.onnx.

The server and benchmark tests need a version with an admitted artifact beside
model.onnx without running the whole `mozart optimize` pipeline. This quantizes the
version's own graph with `mozart optimize`'s INT8 step (calibrated on seeded windows of
sines and noise) and records it in model.json the way `mozart optimize` does, with the
figures the test gives.

    from tests.support.artifacts import add_int8_artifact
    add_int8_artifact(version_dir, throughput_ratio=1.4)
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mozart_optimize.quantize import quantize_int8
from mozart_server.engines.artifacts import file_sha256


def _windows(window_samples: int, count: int = 32, seed: int = 0) -> np.ndarray:
    """Seeded sines with noise: enough to calibrate the test model's activations."""
    rng = np.random.default_rng(seed)
    t = np.arange(window_samples) / 16_000
    return np.stack([
        0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t)
        + 0.05 * rng.standard_normal(window_samples)
        for _ in range(count)
    ]).astype(np.float32)  # fmt: skip


def add_artifact_record(version_dir: Path, record: dict[str, Any]) -> None:
    """Appends one artifact record to the version's model.json."""
    manifest_path = version_dir / "model.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.setdefault("artifacts", []).append(record)
    manifest_path.write_text(json.dumps(manifest, indent=2))


def add_int8_artifact(
    version_dir: Path,
    *,
    file: str = "model.int8.onnx",
    throughput_ratio: float = 1.5,
    provider: str = "CPUExecutionProvider",
    record_digest: bool = True,
) -> Path:
    """Quantizes model.onnx to `file` with `mozart optimize`'s INT8 step and lists it."""
    manifest = json.loads((version_dir / "model.json").read_text())
    target = version_dir / file
    with tempfile.TemporaryDirectory() as work:
        quantize_int8(
            version_dir / "model.onnx",
            target,
            _windows(int(manifest["window_samples"])),
            work_dir=Path(work),
        )
    speed = {"batch1_latency_ratio": throughput_ratio, "best_throughput_ratio": throughput_ratio}
    add_artifact_record(
        version_dir,
        {
            "file": file,
            "kind": "onnxruntime",
            "precision": "int8",
            "provider": provider,
            "speed": speed,
            "sha256": file_sha256(target) if record_digest else None,
            "tools": {"onnxruntime": "test"},
        },
    )  # fmt: skip
    return target
