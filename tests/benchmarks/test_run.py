"""The runner end to end on the tiny test model: real servers, real Locust, real reports.

One smoke run (module-scoped, shared by the tests below) serves the tiny model from FP32
and INT8 side by side, with every phase and a one-step knee ramp: it proves each part is
written, both engines are measured, and the side-by-side ratios are the figures' own. A
second, shorter run (the overhead phase alone) serves with a 50 ms batching delay (a real
server setting, nothing test-only), and the gate's overhead check must catch it. The
`smoke` profile runs a few seconds per phase: enough to exercise every part, not to measure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import soundfile

from benchmarks.gate import main as gate_main
from tests.support.artifacts import add_int8_artifact
from tests.support.audio import music_clip
from tests.support.models import build_test_model

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SLOWED = ("--set", "max_queue_delay_us=50000", "--set", "preferred_batch_sizes=16")
ENGINES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}


@pytest.fixture(scope="module")
def bench_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The tiny model (0.5 s windows) with an INT8 artifact, and two 8 s clips at 22.05 kHz."""
    folder = tmp_path_factory.mktemp("bench")
    add_int8_artifact(build_test_model(folder / "models"), throughput_ratio=1.4)
    for seed in range(2):
        clip = music_clip(8.0, 22_050, seed=seed)
        soundfile.write(folder / f"clip{seed}.flac", clip, 22_050, subtype="PCM_16")
    return folder / "models", str(folder / "*.flac")


def _run(inputs: tuple[Path, str], out: Path, *extra: str) -> tuple[Path, str, int]:
    models, clips = inputs
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--profile", "smoke", "--model", "tiny",
         "--model-repository", str(models), "--clips", clips, "--out", str(out), "--gate",
         *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    output = finished.stdout + finished.stderr
    runs = list(out.iterdir()) if out.exists() else []
    assert len(runs) == 1, output
    return runs[0], output, finished.returncode


@pytest.fixture(scope="module")
def side_by_side(
    bench_inputs: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """One smoke run of both engines: its folder and its output."""
    # One Locust process per stream: the knee's step of 2 streams runs two processes.
    folder, output, code = _run(
        bench_inputs, tmp_path_factory.mktemp("results"), "--engines", "fp32,int8",
        "--streams-per-load-process", "1",
    )  # fmt: skip
    assert code in (0, 1), output  # 1: the smoke profile runs too little to pass every gate
    return folder, output


def _summaries(folder: Path) -> dict[str, dict[str, Any]]:
    return {
        engine: json.loads((folder / engine / "summary.json").read_text()) for engine in ENGINES
    }


def test_a_run_writes_every_artifact_and_passes_the_overhead_gate(
    side_by_side: tuple[Path, str],
) -> None:
    folder, output = side_by_side
    for engine, summary in _summaries(folder).items():
        for name in ("summary.json", "report.md", "latency_vs_load.png",
                     "throughput_vs_ceiling.png", "stream_knee.png", "overhead_stats.csv",
                     "overhead_requests.csv", "streams-2_requests.csv", "v2-2_requests.csv",
                     "knee-2_requests.csv", "users-4_metrics_after.txt", "server.log"):  # fmt: skip
            assert (folder / engine / name).is_file(), f"{engine}/{name}"
        phases = {phase["name"]: phase for phase in summary["phases"]}
        assert set(phases) == {"overhead", "users-4", "streams-2", "v2-2"}
        failed = {name: phase["errors"] for name, phase in phases.items() if phase["failures"]}
        assert not failed, (engine, failed)
        assert all(phase["requests"] > 0 for phase in phases.values())
        # Windows answered by Locust's users were computed by the server, in batches.
        assert phases["users-4"]["server"]["windows_computed"] > 0
        assert phases["users-4"]["load_cpu_s"] > 0  # Locust's own CPU, beside the server's
        assert summary["derived"]["ceiling_windows_per_s"] > 0
        # The server process imported this tree's mozart_server, and said so.
        assert Path(summary["server_module"]).is_relative_to(ROOT / "server")
        # The knee ramp ran its one step (2 streams at the window's hop: 0.5 s here).
        knee = summary["knee"]
        assert (knee["hop_ms"], knee["bound_ms"]) == (500, 100.0)
        assert [step["streams"] for step in knee["steps"]] == [2]
        # Two Locust processes, their rows merged into one CSV, their CPU summed.
        assert knee["steps"][0]["load_processes"] == 2
        assert knee["steps"][0]["windows"] > 0
        assert knee["steps"][0]["load_cpu_s"] > 0
        assert not list((folder / engine).glob("knee-2_requests.*.csv"))
        assert summary["derived"]["knee_streams"] in (0, 2)
        assert "## Stream knee" in (folder / engine / "report.md").read_text()
        assert f"[{engine} 1/4] overhead" in output
    overhead_rows = re.findall(
        r"median overhead over batch-1 compute, concurrency 1 +<= [\d.]+ ms +(pass|FAIL)", output
    )
    assert overhead_rows[:2] == ["pass", "pass"], output  # the gate of each engine
    assert "knee of tiny: " in output


def test_a_run_measures_fp32_and_int8_side_by_side(side_by_side: tuple[Path, str]) -> None:
    folder, output = side_by_side
    assert "gate for fp32" in output
    assert "gate for int8" in output
    summaries = _summaries(folder)
    for engine, artifact in ENGINES.items():
        summary = summaries[engine]
        assert summary["engine_choice"] == engine
        assert summary["server_settings"] == {"engine": engine}
        assert (summary["ceiling"]["artifact"], summary["ceiling"]["precision"]) == (
            artifact, engine
        )  # fmt: skip
        # The server logged the same artifact the ceiling measured.
        assert summary["server_artifact"] == artifact
        assert (
            f"{artifact} ({engine}, onnxruntime on cpu"
            in (folder / engine / "report.md").read_text()
        )

    comparison = json.loads((folder / "comparison.json").read_text())
    assert comparison["baseline"] == "fp32"
    assert [engine["engine"] for engine in comparison["engines"]] == ["fp32", "int8"]
    (ratios,) = comparison["ratios"]
    fp32, int8 = summaries["fp32"], summaries["int8"]
    assert ratios["ceiling_windows_per_s"] == pytest.approx(
        int8["derived"]["ceiling_windows_per_s"] / fp32["derived"]["ceiling_windows_per_s"]
    )
    assert ratios["batch1_median_ms"] == pytest.approx(
        int8["derived"]["batch1_median_ms"] / fp32["derived"]["batch1_median_ms"]
    )
    assert [phase["name"] for phase in ratios["phases"]] == [
        phase["name"] for phase in fp32["phases"]
    ]
    for ratio, base, other in zip(ratios["phases"], fp32["phases"], int8["phases"], strict=True):
        if base["windows_per_s"]:
            assert ratio["windows_per_s"] == pytest.approx(
                other["windows_per_s"] / base["windows_per_s"]
            )
    report = (folder / "report.md").read_text()
    assert "fp32, int8 side by side" in report
    assert "| windows/s (best batch size) |" in report
    assert "int8 / fp32" in report
    assert "[int8](int8/report.md)" in report


def test_a_deliberately_slowed_server_fails_the_gate(
    bench_inputs: tuple[Path, str], tmp_path: Path
) -> None:
    # Pinned, as on a machine with cores to spare: the server on one CPU, Locust on another.
    usable = os.sched_getaffinity(0)
    first_cpu, last_cpu = min(usable), max(usable)
    pinning = ("--server-cpus", str(first_cpu), "--load-cpus", str(last_cpu))
    # The overhead phase is the one this checks: the run skips the others.
    folder, output, code = _run(bench_inputs, tmp_path, *SLOWED, *pinning, "--phases", "overhead")
    assert code == 1, output
    assert re.search(
        r"median overhead over batch-1 compute, concurrency 1 +<= [\d.]+ ms +FAIL", output
    )
    summary = json.loads((folder / "summary.json").read_text())
    assert [phase["name"] for phase in summary["phases"]] == ["overhead"]
    assert summary["derived"]["median_overhead_ms"] >= 40
    assert (summary["server_cpus"], summary["load_cpus"]) == (str(first_cpu), str(last_cpu))
    assert f"server and ceiling pinned to CPUs {first_cpu}," in (folder / "report.md").read_text()
    assert gate_main([str(folder / "summary.json")]) == 1
