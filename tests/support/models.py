"""A tiny, deterministic ONNX classifier built with onnx.helper (no torch), in a model repository.

The graph follows the model.json contract: input `waveform` float32 [batch, window_samples],
outputs `probabilities`, `logits` and `embedding`. It cuts each window into frames, takes
the log energy of each frame, and maps those through two fixed matrices, so the scores
depend on the audio and are the same on every run.

    from tests.support.models import build_test_model
    version_dir = build_test_model(tmp_path / "models")   # tmp_path/models/tiny/1/
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_LABELS = ("baroque", "classical", "jazz", "romantic")
OPSET = 17


def build_test_graph(
    *,
    window_samples: int,
    frame_samples: int,
    n_labels: int,
    embedding_dim: int,
    task: str,
    seed: int,
) -> onnx.ModelProto:
    """Builds the ONNX model: frames -> log energy -> tanh(MatMul) -> MatMul -> softmax/sigmoid."""
    if window_samples % frame_samples:
        raise ValueError("window_samples must be a multiple of frame_samples")
    frames = window_samples // frame_samples
    rng = np.random.default_rng(seed)
    w_embed = (rng.standard_normal((frames, embedding_dim)) / np.sqrt(frames)).astype(np.float32)
    b_embed = rng.standard_normal(embedding_dim).astype(np.float32) * 0.1
    w_out = rng.standard_normal((embedding_dim, n_labels)).astype(np.float32)
    b_out = rng.standard_normal(n_labels).astype(np.float32) * 0.1
    initializers = [
        numpy_helper.from_array(np.array([-1, frames, frame_samples], np.int64), "frame_shape"),
        numpy_helper.from_array(np.array([1e-6], np.float32), "floor"),
        numpy_helper.from_array(np.array([0.2], np.float32), "scale"),
        numpy_helper.from_array(w_embed, "w_embed"),
        numpy_helper.from_array(b_embed, "b_embed"),
        numpy_helper.from_array(w_out, "w_out"),
        numpy_helper.from_array(b_out, "b_out"),
    ]
    score_node = (
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)
        if task == "multiclass"
        else helper.make_node("Sigmoid", ["logits"], ["probabilities"])
    )
    nodes = [
        helper.make_node("Reshape", ["waveform", "frame_shape"], ["framed"]),
        helper.make_node("Mul", ["framed", "framed"], ["squared"]),
        helper.make_node("ReduceMean", ["squared"], ["energy"], axes=[2], keepdims=0),
        helper.make_node("Add", ["energy", "floor"], ["energy_floored"]),
        helper.make_node("Log", ["energy_floored"], ["log_energy"]),
        helper.make_node("Mul", ["log_energy", "scale"], ["features"]),
        helper.make_node("MatMul", ["features", "w_embed"], ["hidden"]),
        helper.make_node("Add", ["hidden", "b_embed"], ["hidden_biased"]),
        helper.make_node("Tanh", ["hidden_biased"], ["embedding"]),
        helper.make_node("MatMul", ["embedding", "w_out"], ["logits_raw"]),
        helper.make_node("Add", ["logits_raw", "b_out"], ["logits"]),
        score_node,
    ]
    for index, node in enumerate(nodes):  # exporters name their nodes; optimizers rely on it
        node.name = f"{node.op_type.lower()}_{index}"
    graph = helper.make_graph(
        nodes,
        "mozart_test_model",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", window_samples])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_labels]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_labels]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", embedding_dim]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def manifest(
    name: str,
    version: str,
    *,
    labels: Sequence[str],
    sample_rate_hz: int,
    window_samples: int,
    default_hop_ms: int,
    embedding_dim: int,
    task: str,
) -> dict[str, object]:
    """The model.json of the test model (docs/model-repository.md)."""
    return {
        "schema_version": 1,
        "name": name,
        "version": version,
        "task": task,
        "labels": list(labels),
        "sample_rate_hz": sample_rate_hz,
        "window_samples": window_samples,
        "default_hop_ms": default_hop_ms,
        "inputs": [{"name": "waveform", "dtype": "float32", "shape": [-1, window_samples]}],
        "outputs": [
            {"name": "probabilities", "dtype": "float32", "shape": [-1, len(labels)]},
            {"name": "logits", "dtype": "float32", "shape": [-1, len(labels)]},
            {"name": "embedding", "dtype": "float32", "shape": [-1, embedding_dim]},
        ],
        "front_end": {"kind": "frame log-energy (test model)"},
        "provenance": {"dataset_digest": "", "git_commit": "", "mlflow_run_id": "",
                       "metrics": {}, "created_at": "2024-01-01T00:00:00Z"},
        "reference_stats": {},
    }  # fmt: skip


def build_test_model(
    repository: Path,
    name: str = "tiny",
    version: str = "1",
    *,
    labels: Sequence[str] = DEFAULT_LABELS,
    sample_rate_hz: int = 16_000,
    window_samples: int = 8_000,
    frame_samples: int = 400,
    default_hop_ms: int = 250,
    embedding_dim: int = 8,
    task: str = "multiclass",
    seed: int = 0,
) -> Path:
    """Writes `repository/name/version/{model.onnx, model.json}` and returns that folder.

    The default window is 0.5 s at 16 kHz so tests stay fast; change `seed` for a model
    with other weights (e.g. a second version that scores differently).
    """
    version_dir = repository / name / version
    version_dir.mkdir(parents=True, exist_ok=True)
    graph = build_test_graph(
        window_samples=window_samples,
        frame_samples=frame_samples,
        n_labels=len(labels),
        embedding_dim=embedding_dim,
        task=task,
        seed=seed,
    )
    onnx.save(graph, str(version_dir / "model.onnx"))
    (version_dir / "model.json").write_text(
        json.dumps(
            manifest(
                name, version, labels=labels, sample_rate_hz=sample_rate_hz,
                window_samples=window_samples, default_hop_ms=default_hop_ms,
                embedding_dim=embedding_dim, task=task,
            ),
            indent=2,
        )
    )  # fmt: skip
    return version_dir
