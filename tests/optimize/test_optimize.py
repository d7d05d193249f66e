"""`mozart optimize` on a small real CNN: what it writes, what it keeps FP32, what it refuses.

Speed is measured by the command but never asserted here (these machines are noisy):
the tests that need an artifact admitted pass --min-speedup 0, and the speed gate's
decision is tested on given figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mozart_optimize.gates import Thresholds, speed_failures
from mozart_optimize.graph import front_end_nodes
from mozart_server.engines.artifacts import file_sha256
from mozart_server.models.manifest import read_manifest
from mozart_server.models.repository import VersionDir


def _optimize(version_dir: Path, corpus: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mozart_proto.cli", "optimize", str(version_dir),
         "--data", str(corpus), "--speed-seconds", "0.3", "--batch-sizes", "1,4",
         "--calibration-windows", "24", *flags],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip


def _quantized_inputs(model: onnx.ModelProto) -> set[str]:
    """Nodes that read a DequantizeLinear output, i.e. run on quantized data."""
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return {
        node.name
        for node in model.graph.node
        if node.op_type != "QuantizeLinear" and any(name in dequantized for name in node.input)
    }


@pytest.mark.slow
def test_int8_is_static_qdq_with_the_front_end_in_fp32_and_is_recorded(
    version_copy: Path, optimize_corpus: Path
) -> None:
    done = _optimize(version_copy, optimize_corpus, "--only", "int8", "--min-speedup", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "calibration: 24 windows of split 'train', seed 0" in done.stderr
    assert "calibrated 24/24 windows" in done.stderr

    int8 = onnx.load(str(version_copy / "model.int8.onnx"))
    ops = [node.op_type for node in int8.graph.node]
    assert "QuantizeLinear" in ops
    assert "DequantizeLinear" in ops
    # Static: activation scales are constants from calibration, not computed per call.
    assert "DynamicQuantizeLinear" not in ops
    quantized = _quantized_inputs(int8)
    convs = [n.name for n in int8.graph.node if n.op_type == "Conv"]
    assert any(name in quantized for name in convs[2:]), "the later convolutions run in INT8"
    # Weights are signed INT8 with one scale per output channel.
    weights = {t.name: t for t in int8.graph.initializer}
    int8_weights = [t for t in weights.values() if t.data_type == onnx.TensorProto.INT8]
    assert int8_weights
    per_channel_scales = [
        t
        for t in weights.values()
        if t.name.endswith("_scale") and len(t.dims) == 1 and t.dims[0] > 1
    ]
    assert per_channel_scales
    # The front end reads no quantized tensor.
    front_end = front_end_nodes(onnx.load(str(version_copy / "model.onnx")))
    assert "Log" in {n.op_type for n in int8.graph.node if n.name in front_end}
    assert not quantized & set(front_end)

    served = read_manifest(VersionDir("small", "1", version_copy))
    (record,) = served.artifacts
    assert (record.file, record.kind, record.precision, record.provider) == (
        "model.int8.onnx", "onnxruntime", "int8", "CPUExecutionProvider")  # fmt: skip
    assert record.sha256 == file_sha256(version_copy / "model.int8.onnx")
    assert set(record.accuracy["splits"]) == {"test", "test_timbre"}
    assert record.speed is not None
    assert record.speed.best_throughput_ratio > 0
    raw = json.loads((version_copy / "model.json").read_text())["artifacts"][0]
    assert raw["quantization"]["calibration"] == {"split": "train", "windows": 24, "seed": 0}
    assert raw["tools"]["onnxruntime"] == ort.__version__

    report = json.loads((version_copy / "optimize" / "report.json").read_text())
    assert [s["status"] for s in report["stages"]] == ["admitted"]
    assert (
        "| `model.int8.onnx` | **admitted** |"
        in (version_copy / "optimize" / "report.md").read_text()
    )


@pytest.mark.slow
def test_the_recorded_figures_recompute_from_the_files(
    version_copy: Path, optimize_corpus: Path
) -> None:
    """The agreement in model.json is what the two graphs give on the gate windows."""
    from mozart_optimize.windows import load_windows  # noqa: PLC0415

    done = _optimize(version_copy, optimize_corpus, "--only", "int8", "--min-speedup", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = read_manifest(VersionDir("small", "1", version_copy))
    windows = load_windows(optimize_corpus, "test", manifest)
    scores = [
        ort.InferenceSession(str(version_copy / name), providers=["CPUExecutionProvider"]).run(
            ["probabilities"], {"waveform": windows.windows}
        )[0]
        for name in ("model.onnx", "model.int8.onnx")
    ]
    agreement = float(np.mean(scores[0].argmax(1) == scores[1].argmax(1)))
    recorded = manifest.artifacts[0].accuracy["splits"]["test"]
    assert recorded["windows"] == len(windows)
    assert recorded["agreement"] == pytest.approx(agreement, abs=1e-6)


@pytest.mark.slow
def test_a_failed_gate_writes_nothing_and_exits_1(
    version_copy: Path, optimize_corpus: Path
) -> None:
    # First admitted, then refused by a gate no graph can pass: the old copy goes too.
    admitted = _optimize(version_copy, optimize_corpus, "--only", "int8", "--min-speedup", "0")
    assert admitted.returncode == 0, admitted.stderr[-3000:]
    refused = _optimize(version_copy, optimize_corpus, "--only", "int8", "--min-speedup", "1000")
    assert refused.returncode == 1, refused.stderr[-3000:]
    assert "must be above 1000.00x" in refused.stderr
    assert not (version_copy / "model.int8.onnx").exists()
    assert json.loads((version_copy / "model.json").read_text())["artifacts"] == []
    assert "**refused**" in (version_copy / "optimize" / "report.md").read_text()
    assert not list(version_copy.glob(".optimize-*")), "the scratch folder is removed"


@pytest.mark.slow
def test_opt_graph_is_checked_for_parity(version_copy: Path, optimize_corpus: Path) -> None:
    done = _optimize(version_copy, optimize_corpus, "--only", "opt", "--min-speedup", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((version_copy / "optimize" / "report.json").read_text())
    (stage,) = report["stages"]
    assert stage["file"] == "model.opt.onnx"
    assert stage["status"] == "admitted"
    assert all(s["max_abs_difference"] <= 1e-4 for s in stage["accuracy"].values())
    assert (version_copy / "model.opt.onnx").is_file()


def test_tensorrt_is_skipped_with_the_reason_when_absent(
    trained_version: Path, optimize_corpus: Path, tmp_path: Path
) -> None:
    try:
        import tensorrt  # noqa: F401, PLC0415
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here: the skip path does not apply")
    done = _optimize(trained_version, optimize_corpus, "--only", "tensorrt",
                     "--out-report", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[tensorrt] skipped: " in done.stderr
    assert "TensorRT" in done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["stages"][0]["status"] == "skipped"
    assert not (trained_version / "model.plan").exists()


def test_usage_errors_exit_2(trained_version: Path, tmp_path: Path) -> None:
    missing_data = _optimize(trained_version, tmp_path / "nowhere")
    assert missing_data.returncode == 2
    assert "no dataset at" in missing_data.stderr
    bad_stage = _optimize(trained_version, tmp_path, "--only", "int4")
    assert bad_stage.returncode == 2
    assert "unknown stages ['int4']" in bad_stage.stderr
    not_a_version = _optimize(tmp_path, tmp_path)
    assert not_a_version.returncode == 2
    assert "model.onnx does not exist" in not_a_version.stderr


def test_the_speed_gate_admits_only_what_is_faster() -> None:
    thresholds = Thresholds(min_speedup=1.05)
    assert speed_failures(1.2, thresholds) == []
    assert speed_failures(1.05, thresholds) != []
    assert "0.90x FP32's" in speed_failures(0.9, thresholds)[0]


def test_the_tensorrt_qdq_graph_is_one_tensorrt_takes(
    trained_version: Path, tmp_path: Path
) -> None:
    """Symmetric signed INT8 and float biases (TensorRT's explicit quantization); the CPU
    graph's unsigned activations are what TensorRT refuses."""
    from mozart_optimize.quantize import quantize_int8  # noqa: PLC0415
    from mozart_optimize.tensorrt_plan import qdq_problems  # noqa: PLC0415

    rng = np.random.default_rng(0)
    windows = (0.1 * rng.standard_normal((8, 48_000))).astype(np.float32)
    for_tensorrt, for_cpu = tmp_path / "trt.onnx", tmp_path / "cpu.onnx"
    quantize_int8(trained_version / "model.onnx", for_tensorrt, windows, work_dir=tmp_path,
                  for_tensorrt=True)  # fmt: skip
    quantize_int8(trained_version / "model.onnx", for_cpu, windows, work_dir=tmp_path)
    assert qdq_problems(onnx.load(str(for_tensorrt))) == []
    assert qdq_problems(onnx.load(str(for_cpu)))  # unsigned activations, INT32 biases
    model = onnx.load(str(for_tensorrt))
    front_end = front_end_nodes(onnx.load(str(trained_version / "model.onnx")))
    quantized = _quantized_inputs(model)
    assert not quantized & set(front_end)
    first_cnn_conv = next(
        n.name for n in model.graph.node if n.op_type == "Conv" and n.name not in front_end
    )
    assert first_cnn_conv in quantized, "TensorRT quantizes the first convolution too"
