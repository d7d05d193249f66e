"""The default model's committed INT8 artifact: what it is, that the server picks it, and
that its recorded agreement and accuracy recompute on the real corpus.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from mozart_optimize.graph import front_end_nodes
from mozart_optimize.windows import load_windows
from mozart_server.engines import EngineFactory
from mozart_server.engines.artifacts import file_sha256
from mozart_server.engines.onnx import OnnxEngine
from mozart_server.models.manifest import Manifest, read_manifest
from mozart_server.models.repository import VersionDir
from mozart_server.settings import OnnxSettings, ServerSettings
from mozart_trainer.paths import project_root
from tests.support.corpus import default_corpus

MODEL_DIR = project_root() / "models" / "composer-cnn" / "1"


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return read_manifest(VersionDir("composer-cnn", "1", MODEL_DIR))


def test_it_is_listed_with_its_digest_and_gate_figures(manifest: Manifest) -> None:
    (int8,) = [artifact for artifact in manifest.artifacts if artifact.precision == "int8"]
    assert int8.file == "model.int8.onnx"
    assert int8.sha256 == file_sha256(MODEL_DIR / int8.file)
    for split in ("test", "test_timbre"):
        figures = int8.accuracy["splits"][split]
        assert figures["agreement"] >= int8.accuracy["thresholds"]["min_agreement"]
        assert figures["accuracy_drop_points"] <= 0.5
    assert int8.speed is not None
    assert int8.speed.best_throughput_ratio > int8.accuracy["thresholds"]["min_speedup"]
    card = (MODEL_DIR / "MODEL_CARD.md").read_text()
    assert f"| {int8.speed.best_throughput_ratio:.2f} (batch" in card


def test_it_is_static_int8_with_the_front_end_in_fp32() -> None:
    graph = onnx.load(str(MODEL_DIR / "model.int8.onnx")).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert "DynamicQuantizeLinear" not in ops
    quantized_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(quantized_weights) >= 4  # three convolutions and the two dense layers
    front_end = front_end_nodes(onnx.load(str(MODEL_DIR / "model.onnx")))
    by_name = {node.name: node for node in graph.node}
    stft = by_name[front_end[1]]
    assert stft.op_type == "Conv"
    # The STFT convolution still reads its FP32 weights, not a dequantized copy.
    assert "front_end.stft.weight" in stft.input


def test_the_server_serves_it_under_auto_and_model_onnx_under_fp32(manifest: Manifest) -> None:
    def chosen(engine: str) -> str:
        factory = EngineFactory(ServerSettings(engine=engine).engine)
        return factory.choose("composer-cnn", MODEL_DIR, manifest.artifacts).file

    assert chosen("auto") == "model.int8.onnx"
    assert chosen("int8") == "model.int8.onnx"
    assert chosen("fp32") == "model.onnx"


@pytest.mark.slow
def test_its_recorded_agreement_recomputes_on_the_corpus(manifest: Manifest) -> None:
    corpus = default_corpus()
    (int8,) = [artifact for artifact in manifest.artifacts if artifact.precision == "int8"]
    engines = [
        OnnxEngine(MODEL_DIR / name, OnnxSettings(intra_op_threads=0))
        for name in ("model.onnx", int8.file)
    ]
    for split in ("test", "test_timbre"):
        windows = load_windows(corpus, split, manifest)
        fp32, quantized = (
            np.concatenate([engine.run(windows.windows[i : i + 32]).probabilities
                            for i in range(0, len(windows), 32)])
            for engine in engines
        )  # fmt: skip
        agreement = float(np.mean(fp32.argmax(1) == quantized.argmax(1)))
        drop = (np.mean(fp32.argmax(1) == windows.labels)
                - np.mean(quantized.argmax(1) == windows.labels)) * 100  # fmt: skip
        recorded = int8.accuracy["splits"][split]
        assert recorded["windows"] == len(windows)
        assert agreement == pytest.approx(recorded["agreement"], abs=1e-6)
        assert drop == pytest.approx(recorded["accuracy_drop_points"], abs=1e-3)
