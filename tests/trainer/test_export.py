"""ONNX export: opset, names, dynamic batch, portable operators, parity with PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from mozart_trainer.export import ParityError, check_parity, export_onnx, graph_io, onnx_session
from mozart_trainer.frontend import FrontEndConfig
from mozart_trainer.model import AudioCNN, ModelConfig

WINDOW = 48_000
# Operators that every ONNX Runtime provider and TensorRT version runs; no STFT/DFT.
PORTABLE_OPS = {
    "Conv",
    "Mul",
    "Add",
    "Sub",
    "Div",
    "MatMul",
    "Gemm",
    "Log",
    "Clip",
    "Max",
    "Relu",
    "AveragePool",
    "ReduceMean",
    "ReduceMax",
    "Softmax",
    "Sigmoid",
    "Unsqueeze",
    "Squeeze",
    "Transpose",
    "Slice",
    "Reshape",
    "Constant",
    "Shape",
    "Gather",
    "Concat",
    "Identity",
    "BatchNormalization",
    "Flatten",
    "Pow",
    "Sqrt",
    "Cast",
    "Expand",
    "Split",
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[AudioCNN, Path]:
    torch.manual_seed(0)
    model = AudioCNN(
        4, "multiclass", FrontEndConfig(norm_mean=-6.0, norm_std=4.0), ModelConfig()
    ).eval()
    # Non-trivial batch-norm statistics, as after training.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert module.running_mean is not None
            assert module.running_var is not None
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    path = export_onnx(model, WINDOW, tmp_path_factory.mktemp("onnx") / "model.onnx")
    return model, path


def test_graph_names_shapes_and_opset(exported: tuple[AudioCNN, Path]) -> None:
    _, path = exported
    graph = onnx.load(str(path))
    opset = max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 18
    inputs, outputs = graph_io(path)
    assert inputs == [{"name": "waveform", "dtype": "float32", "shape": [-1, WINDOW]}]
    assert [o["name"] for o in outputs] == ["probabilities", "logits", "embedding"]
    assert [o["shape"] for o in outputs] == [[-1, 4], [-1, 4], [-1, 128]]
    ops = {node.op_type for node in graph.graph.node}
    assert ops <= PORTABLE_OPS, ops - PORTABLE_OPS
    assert "STFT" not in ops
    assert "DFT" not in ops


def test_parity_on_clips_at_batch_1_and_7(exported: tuple[AudioCNN, Path]) -> None:
    model, path = exported
    rng = np.random.default_rng(3)
    t = np.arange(WINDOW) / 16_000
    clips = np.stack(
        [
            0.3 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(WINDOW)
            for f in (220, 440, 880)
        ]
    ).astype(np.float32)
    result = check_parity(model, path, clips)
    assert result.batch_sizes == (1, 7)
    assert result.max_abs_diff["probabilities"] < 1e-4


def test_parity_catches_a_model_that_differs(exported: tuple[AudioCNN, Path]) -> None:
    model, path = exported
    other = AudioCNN(4, "multiclass", FrontEndConfig(norm_mean=-6.0, norm_std=4.0), ModelConfig())
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        head = other.classifier[1]
        assert isinstance(head, torch.nn.Linear)
        head.bias.add_(1.0)
    clips = np.random.default_rng(0).standard_normal((2, WINDOW)).astype(np.float32) * 0.1
    with pytest.raises(ParityError, match="logits"):
        check_parity(other.eval(), path, clips)


def test_any_batch_size_runs(exported: tuple[AudioCNN, Path]) -> None:
    _, path = exported
    session = onnx_session(path)
    for batch in (1, 2, 13):
        probabilities = session.run(
            ["probabilities"], {"waveform": np.zeros((batch, WINDOW), np.float32)}
        )[0]
        assert probabilities.shape == (batch, 4)
