"""The runner end to end on the tiny test model: a real server, real Locust, a real report.

The second run serves with a 50 ms batching delay (a real server setting, nothing
test-only), and the gate's overhead check must catch it. Both use the `smoke` profile:
a few seconds per phase, enough to exercise every part, not to measure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from benchmarks.gate import main as gate_main
from tests.support.audio import music_clip
from tests.support.models import build_test_model

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SLOWED = ("--set", "max_queue_delay_us=50000", "--set", "preferred_batch_sizes=16")


@pytest.fixture(scope="module")
def bench_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The tiny model (0.5 s windows) and three 12 s clips at 22.05 kHz, as FLAC files."""
    folder = tmp_path_factory.mktemp("bench")
    build_test_model(folder / "models")
    for seed in range(3):
        clip = music_clip(12.0, 22_050, seed=seed)
        soundfile.write(folder / f"clip{seed}.flac", clip, 22_050, subtype="PCM_16")
    return folder / "models", str(folder / "*.flac")


def _run(inputs: tuple[Path, str], out: Path, *extra: str) -> tuple[Path, str]:
    models, clips = inputs
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--profile", "smoke", "--model", "tiny",
         "--model-repository", str(models), "--clips", clips, "--out", str(out), "--gate",
         *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    runs = list(out.iterdir())
    assert len(runs) == 1, finished.stdout + finished.stderr
    return runs[0], finished.stdout


def test_a_run_writes_every_artifact_and_passes_the_overhead_gate(
    bench_inputs: tuple[Path, str], tmp_path: Path
) -> None:
    folder, output = _run(bench_inputs, tmp_path)
    for name in ("summary.json", "report.md", "latency_vs_load.png", "throughput_vs_ceiling.png",
                 "overhead_stats.csv", "overhead_requests.csv", "streams-2_requests.csv",
                 "v2-2_requests.csv", "users-4_metrics_after.txt", "server.log"):  # fmt: skip
        assert (folder / name).is_file(), name
    summary = json.loads((folder / "summary.json").read_text())
    phases = {phase["name"]: phase for phase in summary["phases"]}
    assert set(phases) == {"overhead", "users-4", "streams-2", "v2-2"}
    assert all(phase["failures"] == 0 and phase["requests"] > 0 for phase in phases.values())
    # Windows answered by Locust's users were computed by the server, in batches.
    assert phases["users-4"]["server"]["windows_computed"] > 0
    assert summary["derived"]["ceiling_windows_per_s"] > 0
    assert "[1/4] overhead" in output
    assert re.search(
        r"median overhead over batch-1 compute, concurrency 1 +<= [\d.]+ ms +pass", output
    )


def test_a_deliberately_slowed_server_fails_the_gate(
    bench_inputs: tuple[Path, str], tmp_path: Path
) -> None:
    # Pinned, as on a machine with cores to spare: the server on one CPU, Locust on another.
    usable = os.sched_getaffinity(0)
    first_cpu, last_cpu = min(usable), max(usable)
    pinning = ("--server-cpus", str(first_cpu), "--load-cpus", str(last_cpu))
    folder, output = _run(bench_inputs, tmp_path, *SLOWED, *pinning)
    assert re.search(
        r"median overhead over batch-1 compute, concurrency 1 +<= [\d.]+ ms +FAIL", output
    )
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["derived"]["median_overhead_ms"] >= 40
    assert (summary["server_cpus"], summary["load_cpus"]) == (str(first_cpu), str(last_cpu))
    assert f"server and ceiling pinned to CPUs {first_cpu}," in (folder / "report.md").read_text()
    assert gate_main([str(folder / "summary.json")]) == 1
