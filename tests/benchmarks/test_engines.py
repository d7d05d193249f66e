"""Engines in the benchmarks: the ceiling measures the artifact that serves, and `--engines`.

(The end-to-end run of both engines side by side is in test_run.py, which shares one run.)

A version of the tiny test model with a real static INT8 artifact beside model.onnx stands
in for a model that `mozart optimize` has optimized. Speed is never asserted: these check
what was measured, and that the side-by-side ratios are the figures' own ratios.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.ceiling import BatchMeasurement, Ceiling, combine, format_ceiling, measure_ceiling
from benchmarks.compare import Comparison
from benchmarks.engines import engines_under_test, parse_engines
from benchmarks.results import Latency, PhaseResult, ServerDelta, Summary
from benchmarks.run import main as run_main
from mozart_server.errors import ModelLoadError
from mozart_server.settings import EngineChoice, ServerSettings
from tests.support.artifacts import add_int8_artifact
from tests.support.models import build_test_model


@pytest.fixture(scope="module")
def optimized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository whose tiny model lists an INT8 artifact, recorded as 1.4x FP32's speed."""
    repository = tmp_path_factory.mktemp("optimized") / "models"
    add_int8_artifact(build_test_model(repository), throughput_ratio=1.4)
    return repository


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository whose tiny model has model.onnx only."""
    repository = tmp_path_factory.mktemp("plain") / "models"
    build_test_model(repository)
    return repository


def _ceiling(repository: Path, **settings: str) -> Ceiling:
    return measure_ceiling(
        ServerSettings(model_repository=repository, **settings),
        "tiny",
        batch_sizes=(1, 2),
        seconds_per_batch=0.05,
    )


@pytest.mark.parametrize(
    ("engine", "artifact", "precision"),
    [("fp32", "model.onnx", "fp32"), ("int8", "model.int8.onnx", "int8"),
     # auto takes the fastest admitted artifact: the INT8 one, at its recorded 1.4x.
     ("auto", "model.int8.onnx", "int8")],
)  # fmt: skip
def test_the_ceiling_measures_the_artifact_the_engine_setting_picks(
    optimized: Path, engine: str, artifact: str, precision: str
) -> None:
    ceiling = _ceiling(optimized, engine=engine, instances="2", intra_op_threads="1")
    assert (ceiling.artifact, ceiling.precision) == (artifact, precision)
    assert (ceiling.engine_kind, ceiling.device) == ("onnxruntime", "cpu")
    # Parallelism is the engine's own, and the threads are its ONNX Runtime settings.
    assert (ceiling.instances, ceiling.intra_op_threads) == (2, 1)
    assert f"{artifact} ({precision}, onnxruntime on cpu; instances=2, intra_op_threads=1)" in (
        format_ceiling(ceiling)
    )


def test_ceilings_of_two_artifacts_are_not_averaged(optimized: Path) -> None:
    fp32, int8 = _ceiling(optimized, engine="fp32"), _ceiling(optimized, engine="int8")
    assert combine(fp32, replace(fp32, batches=int8.batches)).artifact == "model.onnx"
    with pytest.raises(ValueError, match=r"model\.onnx .* model\.int8\.onnx"):
        combine(fp32, int8)


def test_a_summary_written_before_artifacts_reads_as_model_onnx_on_cpu(tmp_path: Path) -> None:
    summary = _summary("", (_phase("overhead", 100.0, 5.0),), ceiling_windows_per_s=300.0)
    path = tmp_path / "summary.json"
    summary.write(path)
    data = json.loads(path.read_text())
    for name in ("artifact", "precision", "engine_kind", "device"):
        del data["ceiling"][name]
    del data["engine_choice"], data["server_artifact"]
    path.write_text(json.dumps(data))
    old = Summary.read(path)
    assert (old.ceiling.artifact, old.ceiling.precision, old.ceiling.device) == (
        "model.onnx", "fp32", "cpu"
    )  # fmt: skip


def test_engines_parse_in_order() -> None:
    assert parse_engines("fp32,int8") == (EngineChoice.FP32, EngineChoice.INT8)
    assert parse_engines(" int8 , fp32 ") == (EngineChoice.INT8, EngineChoice.FP32)
    assert parse_engines("auto") == (EngineChoice.AUTO,)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "separated by commas"), ("fp32,", "separated by commas"),
     ("fp32,fp16", "unknown engine 'fp16': choose from auto, fp32, int8, tensorrt"),
     ("int8,int8", "named twice")],
)  # fmt: skip
def test_bad_engine_lists_are_refused(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_engines(text)


def test_the_runner_refuses_a_bad_engine_list_on_its_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stopped:
        run_main(["--engines", "fp32,fp16"])
    assert stopped.value.code == 2
    assert "unknown engine 'fp16'" in capsys.readouterr().err


def test_each_engine_is_checked_against_the_model_before_anything_runs(
    optimized: Path, plain: Path
) -> None:
    both = (EngineChoice.FP32, EngineChoice.INT8)
    chosen = engines_under_test(optimized, "tiny", {"max_queue_delay_us": "1000"}, both)
    assert [(engine.choice, engine.artifact.file) for engine in chosen] == [
        ("fp32", "model.onnx"), ("int8", "model.int8.onnx")
    ]  # fmt: skip
    assert chosen[1].overrides == {"max_queue_delay_us": "1000", "engine": "int8"}
    assert chosen[1].settings.batching.max_queue_delay_us == 1000
    # Without --engines: the configured engine alone, settings untouched.
    (configured,) = engines_under_test(optimized, "tiny", {"engine": "fp32"}, None)
    assert (configured.choice, configured.overrides) == ("fp32", {"engine": "fp32"})
    with pytest.raises(ModelLoadError, match="has no artifact for engine=int8"):
        engines_under_test(plain, "tiny", {}, both)
    with pytest.raises(ValueError, match="--engines replaces --set engine"):
        engines_under_test(optimized, "tiny", {"engine": "int8"}, both)
    with pytest.raises(ValueError, match="model_engines sets tiny=int8, which overrides"):
        engines_under_test(optimized, "tiny", {"model_engines": "tiny=int8"}, both)


def test_an_engine_without_an_artifact_fails_the_run_before_any_load(
    plain: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    code = run_main(
        ["--profile", "smoke", "--model", "tiny", "--model-repository", str(plain),
         "--engines", "fp32,int8", "--out", str(out), "--clips", "none/*.flac"]
    )  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert "has no artifact for engine=int8 that runs here" in error
    assert "lists no int8 artifact (run mozart optimize)" in error
    assert not out.exists()


SERVER = ServerDelta(100, 10, 10.0, 1.0, 2.0, 3.0, 1.0)


def _phase(name: str, windows_per_s: float, median_ms: float) -> PhaseResult:
    latency = Latency(100, median_ms, median_ms, median_ms * 2, median_ms * 3)
    user_class = "StreamUser" if name.startswith("streams") else "UnaryUser"
    return PhaseResult(name, user_class, 4, 10, 100, 0, (), windows_per_s, latency, SERVER)


def _summary(
    engine: str, phases: tuple[PhaseResult, ...], ceiling_windows_per_s: float, batch1_ms=2.0
) -> Summary:
    artifact, precision = (
        ("model.int8.onnx", "int8") if engine == "int8" else ("model.onnx", "fp32")
    )
    ceiling = Ceiling(
        "tiny", "1", 8_000, 16_000, 1, 1,
        (BatchMeasurement(1, 1000 / batch1_ms, batch1_ms, batch1_ms * 2, 10),
         BatchMeasurement(8, ceiling_windows_per_s, 8.0, 9.0, 10)),
        artifact=artifact, precision=precision,
    )  # fmt: skip
    return Summary(
        "t", "smoke", "tiny", "clips", 250, {"engine": engine}, 2, ceiling, phases,
        engine_choice=engine, server_artifact=artifact,
    )  # fmt: skip


def test_the_ratios_are_each_engine_over_the_first() -> None:
    fp32 = _summary("fp32", (_phase("overhead", 200, 4.0), _phase("users-4", 0, 40.0)), 800)
    int8 = _summary(
        "int8", (_phase("overhead", 210, 3.0), _phase("users-4", 500, 30.0)), 1200, batch1_ms=1.5
    )
    (ratios,) = Comparison((fp32, int8)).ratios
    assert (ratios.engine, ratios.baseline) == ("int8", "fp32")
    assert ratios.ceiling_windows_per_s == pytest.approx(1200 / 800)
    assert ratios.batch1_median_ms == pytest.approx(1.5 / 2.0)
    overhead, users = ratios.phases
    assert overhead.windows_per_s == pytest.approx(210 / 200)
    assert overhead.median_ms == pytest.approx(3.0 / 4.0)
    assert users.windows_per_s is None  # nothing served by the baseline: no ratio


def test_a_comparison_needs_distinct_engines_on_the_same_phases() -> None:
    phases = (_phase("overhead", 200, 4.0),)
    fp32 = _summary("fp32", phases, 800)
    with pytest.raises(ValueError, match="two or more distinct engines"):
        Comparison((fp32,))
    with pytest.raises(ValueError, match="two or more distinct engines"):
        Comparison((fp32, fp32))
    with pytest.raises(ValueError, match="different phases"):
        Comparison((fp32, _summary("int8", (*phases, _phase("users-4", 1, 1.0)), 800)))
