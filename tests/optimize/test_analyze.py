"""`mozart analyze` end to end on the tiny test model: a tiny grid, short points, real parts.

No figure is asserted (the machine is shared); the test checks what the command measured,
that its TOML loads into ServerSettings, and that a real server starts with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mozart_optimize.analyze import Analysis, BatchLimits, Grid, Layout, Point
from mozart_optimize.analyze_cli import main
from mozart_server.settings import CONFIG_FILE_VARIABLE, ServerSettings
from tests.support.models import build_test_model
from tests.support.server import spawned_server

TINY_GRID = ["--instances", "1,2", "--intra-op-threads", "1", "--max-batch-sizes", "4,8",
             "--max-queue-delays-us", "0", "--seconds", "0.2", "--rounds", "1",
             "--concurrency", "4"]  # fmt: skip


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with the tiny model, versions 1 and 2."""
    root = tmp_path_factory.mktemp("analyze-models")
    build_test_model(root)
    build_test_model(root, version="2", seed=1)
    return root


def test_analyze_writes_a_toml_the_server_loads_and_starts_with(
    repository: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "analyze.toml"
    args = ["analyze", "--model-repository", str(repository), "--model", "tiny",
            "--version", "1", *TINY_GRID, "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    # Progress on stderr: 2 layouts, then the other batch limit on the best one.
    assert "[3/3]" in captured.err
    assert "[4/" not in captured.err
    table = captured.out
    for words in ("tiny v1", "run ceiling", "chosen (*)"):
        assert words in table
    assert sum(line.startswith("* ") for line in table.splitlines()) == 1
    for measured in ("1x1", "2x1"):
        assert f"  {measured} " in table or f"* {measured} " in table

    text = out.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any("usable CPUs" in line for line in header)
    assert any(line.startswith("# Why: ") for line in header)
    chosen = tomllib.loads(text)
    assert chosen["instances"] in {1, 2}
    assert chosen["intra_op_threads"] == 1
    assert chosen["max_batch_size"] in {4, 8}
    assert chosen["preferred_batch_sizes"][-1] == chosen["max_batch_size"]

    for name in list(os.environ):
        if name.startswith("MOZART_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(out))
    settings = ServerSettings(model_repository=repository)
    assert settings.engine.onnx.instances == chosen["instances"]
    assert settings.batching.max_batch_size == chosen["max_batch_size"]
    assert settings.sources()["instances"] == "file"

    with spawned_server(repository, "--config-file", str(out)) as server:
        layout = next(line for line in server.logs if line["message"] == "engine layout chosen")
        server.terminate()
        assert server.wait(30) == 0
    assert layout["instances"] == chosen["instances"]
    assert layout["max_batch_size"] == chosen["max_batch_size"]
    assert set(layout["sources"].values()) == {"file"}


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--model", "missing"], "no model 'missing'"),
        (["--model", "tiny", "--version", "7"], "has no version '7' (it has: 1, 2)"),
        (["--model", "tiny", "--max-batch-sizes", "0"], "--max-batch-sizes takes numbers"),
        (["--model", "tiny", "--spinning", "sometimes"], "--spinning takes off, on"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    repository: Path, extra: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "--model-repository", str(repository), *extra]) == 2
    assert words in capsys.readouterr().err


def test_analyze_is_on_the_mozart_command_and_needs_no_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import mozart_optimize.analyze, mozart_optimize.analyze_report\n"
        "from mozart_proto.cli import main\n"
        "sys.exit(main(['analyze', '--help']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--max-queue-delays-us" in done.stdout


def _point(layout: Layout, served: float, c1_ms: float, spread: float = 0.0) -> Point:
    return Point(layout=layout, limits=BatchLimits(16, 0), ceiling_windows_per_s=100.0,
                 batch1_compute_ms=1.0, served_windows_per_s=served, c1_median_ms=c1_ms,
                 c1_p99_ms=c1_ms, mean_batch=16.0, cpu_ms_per_window=2.0,
                 spread=spread)  # fmt: skip


def test_the_winner_is_the_fastest_at_c1_among_those_that_saturate_or_tie() -> None:
    wide, fast, slow = Layout(2, 1, False), Layout(1, 2, False), Layout(1, 1, False)
    analysis = Analysis("m", "1", "model.onnx", "fp32", 2, Grid((wide, fast, slow), ()))
    # Two reach 0.85 of the ceiling (100): the lower c=1 median of those two wins.
    analysis.points = [_point(wide, 95, 3.0), _point(fast, 86, 2.0), _point(slow, 60, 1.0)]
    assert analysis.best()[0].layout == fast
    # None reaches it: within 5 % of the best served throughput, the lower median wins...
    analysis.points = [_point(wide, 80, 3.0), _point(fast, 77, 2.0), _point(slow, 60, 1.0)]
    assert analysis.best()[0].layout == fast
    # ...and a best point that spread by 30 % over the rounds ties with what is within 15 %.
    analysis.points = [_point(wide, 80, 3.0, 0.3), _point(fast, 70, 2.0), _point(slow, 40, 1.0)]
    chosen, reason = analysis.best()
    assert chosen.layout == fast
    assert "within 15%" in reason
