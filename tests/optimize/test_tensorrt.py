"""The TensorRT path: what runs without a GPU here, and the GPU checks that skip here.

Without TensorRT (this project's CI machines: no GPU, and NVIDIA's index is unreachable)
these run for real: both `unavailable_reason`s say why, the engine factory refuses
engine=tensorrt with that reason and serves model.onnx under engine=auto, a plan's record
is checked against the machine, layers are traced back to ONNX nodes, and a Q/DQ graph
TensorRT cannot take is refused before TensorRT is imported. The tests marked gpu build a
plan of the default model and serve it; they run through optimize/gpu_check.sh.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from mozart_optimize import tensorrt_plan
from mozart_optimize.graph import front_end_nodes
from mozart_server.engines import EngineFactory
from mozart_server.engines.artifacts import Artifact, BatchProfile, file_sha256
from mozart_server.engines.tensorrt import DEVICE_KEYS, plan_mismatch, unavailable_reason
from mozart_server.errors import ModelLoadError
from mozart_server.models.manifest import read_manifest
from mozart_server.models.repository import VersionDir
from mozart_server.settings import ServerSettings, TensorRTSettings
from tests.support.artifacts import add_artifact_record
from tests.support.models import build_test_model

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "models" / "composer-cnn" / "1"
TENSORRT_INSTALLED = importlib.util.find_spec("tensorrt") is not None
needs_no_tensorrt = pytest.mark.skipif(
    TENSORRT_INSTALLED, reason="TensorRT is installed here: the 'not here' path does not apply"
)
H100 = {"compute_capability": "9.0", "name": "NVIDIA H100 80GB HBM3"}


def _plan_artifact(**fields: Any) -> Artifact:
    record: dict[str, Any] = {
        "file": "model.plan",
        "kind": "tensorrt",
        "precision": "fp16",
        "provider": "tensorrt",
        "batch_profile": {"min": 1, "opt": 8, "max": 16},
        "tools": {"tensorrt": "10.8.0.43"},
        "device": dict(H100),
    }
    record.update(fields)
    return Artifact.model_validate(record)


def _version_with_plan(tmp_path: Path) -> Path:
    """A test model version whose model.json lists a (dummy) plan, faster than FP32."""
    version_dir = build_test_model(tmp_path / "models")
    plan = version_dir / "model.plan"
    plan.write_bytes(b"not a real plan: this machine cannot build one")
    record = _plan_artifact().model_dump(exclude_none=True)
    record["sha256"] = file_sha256(plan)
    record["speed"] = {"batch1_latency_ratio": 5.0, "best_throughput_ratio": 5.0}
    add_artifact_record(version_dir, record)
    return version_dir


def _artifacts(version_dir: Path) -> tuple[Artifact, ...]:
    manifest = read_manifest(VersionDir("tiny", "1", version_dir))
    return manifest.artifacts


@needs_no_tensorrt
def test_the_server_says_why_it_cannot_run_a_plan() -> None:
    reason = unavailable_reason(_plan_artifact(), TensorRTSettings())
    assert reason is not None
    assert "TensorRT" in reason
    assert "not installed" in reason


@needs_no_tensorrt
def test_the_builder_says_why_it_cannot_build_a_plan() -> None:
    reason = tensorrt_plan.unavailable_reason()
    assert reason is not None
    assert "TensorRT" in reason
    assert "not installed" in reason


@needs_no_tensorrt
def test_engine_tensorrt_refuses_the_version_with_the_reason(tmp_path: Path) -> None:
    version_dir = _version_with_plan(tmp_path)
    (plan,) = _artifacts(version_dir)
    factory = EngineFactory(ServerSettings(engine="tensorrt").engine)
    with pytest.raises(ModelLoadError) as refused:
        factory.create("tiny", version_dir, (plan,))
    reason = unavailable_reason(plan, TensorRTSettings())
    assert reason is not None
    assert "engine=tensorrt" in str(refused.value)
    assert f"model.plan: {reason}" in str(refused.value)


@needs_no_tensorrt
def test_engine_auto_passes_the_plan_over_and_serves_model_onnx(tmp_path: Path) -> None:
    version_dir = _version_with_plan(tmp_path)
    artifacts = _artifacts(version_dir)
    factory = EngineFactory(ServerSettings(engine="auto").engine)
    # The plan records 5x FP32's throughput, so only "cannot run here" keeps it out.
    assert factory.choose("tiny", version_dir, artifacts).file == "model.onnx"
    engine = factory.create("tiny", version_dir, artifacts)
    try:
        assert engine.kind == "onnxruntime"
        assert engine.artifact.file == "model.onnx"
        windows = np.zeros((2, 8000), dtype=np.float32)
        assert engine.run(windows).probabilities.shape == (2, 4)
    finally:
        engine.close()


def test_a_plan_runs_only_where_its_record_says() -> None:
    plan = _plan_artifact()
    assert plan_mismatch(plan, "10.8.0.43", H100) is None
    assert "TensorRT 10.8.0.43" in str(plan_mismatch(plan, "10.9.0.34", H100))
    other_gpu = {**H100, "compute_capability": "8.9"}
    assert "compute_capability 9.0" in str(plan_mismatch(plan, "10.8.0.43", other_gpu))
    same_arch = {**H100, "name": "NVIDIA H100 PCIe"}
    assert "NVIDIA H100 80GB HBM3" in str(plan_mismatch(plan, "10.8.0.43", same_arch))
    unrecorded = _plan_artifact(tools={}, device={})
    assert "tools.tensorrt" in str(plan_mismatch(unrecorded, "10.8.0.43", H100))
    no_device = _plan_artifact(device={})
    assert "device.compute_capability" in str(plan_mismatch(no_device, "10.8.0.43", H100))
    assert set(DEVICE_KEYS) == set(H100)


def test_layers_are_traced_to_their_onnx_nodes() -> None:
    nodes = ["node_transpose", "node_transpose_1", "node_mul_8", "node_log"]
    trace = tensorrt_plan.onnx_nodes_of_layer
    # The parser's metadata wins over the name.
    assert trace("fused_anything", "[ONNX Layer: node_log]", nodes) == {"node_log"}
    assert trace("x", "[ONNX Layer: node_log]\x1f[ONNX Layer: node_mul_8]", nodes) == {
        "node_log",
        "node_mul_8",
    }
    # Without metadata: exact names, then the longest node name before a suffix.
    assert trace("node_transpose_1", "", nodes) == {"node_transpose_1"}
    assert trace("node_transpose_1_2", "", nodes) == {"node_transpose_1"}
    assert trace("node_mul_8_3", "", nodes) == {"node_mul_8"}
    assert trace("node_mul_80", "", nodes) == set()
    assert trace("(Unnamed Layer* 3) [Shuffle]", "", nodes) == set()


class _Windows(CalibrationDataReader):  # type: ignore[misc]  # untyped base
    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self._batches = [
            (0.3 * rng.standard_normal((2, 8000))).astype(np.float32) for _ in range(4)
        ]

    def get_next(self) -> dict[str, Any] | None:
        return {"waveform": self._batches.pop()} if self._batches else None


def _quantized(version_dir: Path, *, symmetric: bool) -> Path:
    target = version_dir / ("sym.onnx" if symmetric else "asym.onnx")
    quantize_static(
        str(version_dir / "model.onnx"), str(target), _Windows(), quant_format=QuantFormat.QDQ,
        per_channel=True, weight_type=QuantType.QInt8,
        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
        op_types_to_quantize=["MatMul"],
        extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
    )  # fmt: skip
    return target


def test_a_qdq_graph_tensorrt_cannot_take_is_refused_before_tensorrt(tmp_path: Path) -> None:
    version_dir = build_test_model(tmp_path / "models")
    asymmetric = _quantized(version_dir, symmetric=False)
    problems = tensorrt_plan.qdq_problems(onnx.load(str(asymmetric)))
    assert problems
    assert any("UINT8" in problem for problem in problems)
    symmetric = _quantized(version_dir, symmetric=True)
    assert tensorrt_plan.qdq_problems(onnx.load(str(symmetric))) == []
    build: dict[str, Any] = {
        "min_batch": 1, "opt_batch": 4, "max_batch": 8, "fp16": True, "fp32_layers": [],
        "timing_cache": tmp_path / "cache", "log_path": tmp_path / "build.log",
    }  # fmt: skip
    fp32 = version_dir / "model.onnx"
    with pytest.raises(ValueError, match="ActivationSymmetric"):
        tensorrt_plan.build_plan(asymmetric, tmp_path / "a.plan", int8=True, **build)
    with pytest.raises(ValueError, match="no QuantizeLinear"):
        tensorrt_plan.build_plan(fp32, tmp_path / "b.plan", int8=True, **build)
    with pytest.raises(ValueError, match="min <= opt <= max"):
        tensorrt_plan.build_plan(
            fp32, tmp_path / "c.plan", int8=False, **{**build, "opt_batch": 16}
        )
    assert not list(tmp_path.glob("*.plan"))


@needs_no_tensorrt
def test_without_tensorrt_build_plan_says_why_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="cannot build a TensorRT plan here: TensorRT"):
        tensorrt_plan.build_plan(
            DEFAULT_MODEL / "model.onnx", tmp_path / "model.plan", min_batch=1, opt_batch=4,
            max_batch=8, int8=False, fp16=True, fp32_layers=["node_log"],
            timing_cache=tmp_path / "cache", log_path=tmp_path / "build.log",
        )  # fmt: skip
    assert not (tmp_path / "model.plan").exists()


# ---- on a GPU with TensorRT 10 and cuda-python (optimize/gpu_check.sh); skipped here ----

MAX_BATCH = 8


@pytest.fixture(scope="module")
def built_plan(tmp_path_factory: pytest.TempPathFactory) -> tensorrt_plan.PlanBuild:
    """An FP16 plan of the default model, front end in FP32, for batches 1..8."""
    pytest.importorskip(
        "tensorrt", reason="TensorRT is not installed here (NVIDIA's index is unreachable)"
    )
    reason = tensorrt_plan.unavailable_reason()
    if reason is not None:
        pytest.skip(f"no TensorRT plan can be built here: {reason}")
    work = tmp_path_factory.mktemp("tensorrt")
    model = onnx.load(str(DEFAULT_MODEL / "model.onnx"))
    return tensorrt_plan.build_plan(
        DEFAULT_MODEL / "model.onnx", work / "model.plan", min_batch=1, opt_batch=4,
        max_batch=MAX_BATCH, int8=False, fp16=True, fp32_layers=front_end_nodes(model),
        timing_cache=work / "timing.cache", log_path=work / "build.log",
    )  # fmt: skip


@pytest.fixture(scope="module")
def plan_engine(built_plan: tensorrt_plan.PlanBuild) -> Iterator[Any]:
    from mozart_server.engines.tensorrt import TensorRTEngine  # noqa: PLC0415

    artifact = Artifact(
        file="model.plan", kind="tensorrt", precision="fp16", provider="tensorrt",
        batch_profile=BatchProfile(min=1, opt=4, max=MAX_BATCH),
        tools={"tensorrt": built_plan.tensorrt_version}, device=built_plan.device,
    )  # fmt: skip
    engine = TensorRTEngine(built_plan.plan, TensorRTSettings(tensorrt_instances=2), artifact)
    yield engine
    engine.close()


def _sines(rows: int, window: int = 48_000, rate_hz: int = 16_000) -> np.ndarray:
    """Chords of a few partials with a little noise: audio the front end sees in practice."""
    rng = np.random.default_rng(rows)
    t = np.arange(window) / rate_hz
    batch = np.zeros((rows, window), dtype=np.float32)
    for row in range(rows):
        for partial in rng.uniform(110, 1760, size=3):
            batch[row] += 0.2 * np.sin(2 * np.pi * partial * t + rng.uniform(0, np.pi))
        batch[row] += 0.01 * rng.standard_normal(window)
    return batch


@pytest.mark.gpu
def test_the_plan_records_this_machine(built_plan: tensorrt_plan.PlanBuild) -> None:
    assert built_plan.plan.stat().st_size > 0
    assert built_plan.precision == "fp16"
    assert set(built_plan.device) == set(DEVICE_KEYS)
    assert built_plan.log.read_text().strip()


@pytest.mark.gpu
def test_the_plan_scores_like_onnx_runtime(plan_engine: Any) -> None:
    assert plan_engine.kind == "tensorrt"
    assert plan_engine.device == "gpu"
    assert [(s.name, s.shape) for s in plan_engine.inputs] == [("waveform", (-1, 48_000))]
    assert {s.name for s in plan_engine.outputs} >= {"probabilities", "logits", "embedding"}
    session = ort.InferenceSession(
        str(DEFAULT_MODEL / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    for rows in (1, 3, MAX_BATCH):
        windows = _sines(rows)
        (expected,) = session.run(["probabilities"], {"waveform": windows})
        got = plan_engine.run(windows)
        assert got.probabilities.shape == expected.shape
        assert got.embedding.shape == (rows, 128)
        assert np.all(np.isfinite(got.logits))
        # FP16 layers after an FP32 front end: close, not equal.
        np.testing.assert_allclose(got.probabilities, expected, atol=2e-2)
        top2 = np.sort(expected, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 0.05  # rows whose top class is no near tie
        assert np.array_equal(got.probabilities.argmax(1)[clear], expected.argmax(1)[clear])


@pytest.mark.gpu
def test_contexts_run_batches_at_the_same_time(plan_engine: Any) -> None:
    windows = [_sines(rows) for rows in (2, 5, 7, 4)]
    alone = [plan_engine.run(batch).probabilities for batch in windows]
    together: list[Any] = [None] * len(windows)

    def run(index: int) -> None:
        together[index] = plan_engine.run(windows[index]).probabilities

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(windows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for mine, theirs in zip(alone, together, strict=True):
        np.testing.assert_allclose(mine, theirs, atol=1e-5)  # each caller gets its own rows


@pytest.mark.gpu
def test_a_batch_over_the_profile_is_refused(plan_engine: Any) -> None:
    profile = rf"outside the TensorRT plan's optimization profile \(1\.\.{MAX_BATCH}\)"
    with pytest.raises(ValueError, match=profile):
        plan_engine.run(np.zeros((MAX_BATCH + 1, 48_000), dtype=np.float32))
    with pytest.raises(ValueError, match="takes \\[batch, 48000\\]"):
        plan_engine.run(np.zeros((1, 16_000), dtype=np.float32))


@pytest.mark.gpu
def test_the_server_accepts_the_plan_it_built_and_no_other(
    built_plan: tensorrt_plan.PlanBuild,
) -> None:
    mine = _plan_artifact(tools={"tensorrt": built_plan.tensorrt_version}, device=built_plan.device)
    assert unavailable_reason(mine, TensorRTSettings()) is None
    other = _plan_artifact(tools={"tensorrt": "10.0.0.0"}, device=built_plan.device)
    assert "rebuild it here" in str(unavailable_reason(other, TensorRTSettings()))
