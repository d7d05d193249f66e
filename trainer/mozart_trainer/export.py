"""ONNX export (dynamo exporter, opset 18, dynamic batch) and the ONNX Runtime parity check."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from numpy.typing import NDArray

from mozart_trainer.model import AudioCNN

OPSET = 18
INPUT_NAME = "waveform"
OUTPUT_NAMES = ("probabilities", "logits", "embedding")
PARITY_BATCH_SIZES = (1, 7)

logger = logging.getLogger(__name__)


class ParityError(AssertionError):
    """ONNX Runtime and PyTorch disagree beyond the tolerance."""


@dataclass(frozen=True)
class ParityResult:
    """Largest differences seen between ONNX Runtime and PyTorch, per output."""

    batch_sizes: tuple[int, ...]
    max_abs_diff: dict[str, float]
    max_rel_diff: dict[str, float]


def export_onnx(model: AudioCNN, window_samples: int, path: Path) -> Path:
    """Exports the model with a dynamic batch axis and checks the file with onnx.checker."""
    model = model.eval().cpu()
    example = torch.zeros(2, window_samples)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        opset_version=OPSET,
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        # Keys must be forward()'s argument names.
        dynamic_shapes={"waveform": {0: batch}},
        external_data=False,
    )
    if program is None:  # pragma: no cover - the dynamo exporter always returns a program
        raise RuntimeError("torch.onnx.export returned no program")
    program.optimize()
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path))
    onnx.checker.check_model(str(path), full_check=True)
    logger.info("ONNX exported", extra={"path": str(path), "bytes": path.stat().st_size})
    return path


def onnx_session(path: Path) -> onnxruntime.InferenceSession:
    """A CPU session with deterministic, quiet defaults."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def check_parity(
    model: AudioCNN,
    path: Path,
    clips: NDArray[np.float32],
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> ParityResult:
    """Compares ONNX Runtime with PyTorch on real clips at batch sizes 1 and 7.

    Raises:
        ParityError: an output differs by more than ``atol + rtol * |torch|``.
    """
    session = onnx_session(path)
    model = model.eval().cpu()
    max_abs = dict.fromkeys(OUTPUT_NAMES, 0.0)
    max_rel = dict.fromkeys(OUTPUT_NAMES, 0.0)
    for batch_size in PARITY_BATCH_SIZES:
        batch = np.resize(clips, (batch_size, clips.shape[1])).astype(np.float32)
        ort_outputs = session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        with torch.no_grad():
            torch_outputs = [t.numpy() for t in model(torch.from_numpy(batch))]
        for name, got, want in zip(OUTPUT_NAMES, ort_outputs, torch_outputs, strict=True):
            if got.shape != want.shape:
                raise ParityError(f"{name}: shape {got.shape} != {want.shape}")
            diff = np.abs(got - want)
            max_abs[name] = max(max_abs[name], float(diff.max()))
            max_rel[name] = max(max_rel[name], float((diff / (np.abs(want) + atol)).max()))
            if not np.allclose(got, want, rtol=rtol, atol=atol):
                raise ParityError(
                    f"{name} at batch {batch_size}: max abs diff {float(diff.max()):.3g}"
                )
    return ParityResult(PARITY_BATCH_SIZES, max_abs, max_rel)


def graph_io(path: Path) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The ONNX graph's inputs and outputs as model.json entries (``-1`` for dynamic axes)."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def describe(value: onnx.ValueInfoProto) -> dict[str, object]:
        dims = [
            d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim
        ]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        return {"name": value.name, "dtype": str(np.dtype(dtype)), "shape": dims}

    return [describe(v) for v in graph.input], [describe(v) for v in graph.output]
