"""The baseline gate's decision on synthetic figures, and how it finds (or misses) a baseline."""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from benchmarks import abba
from benchmarks.abba import ORDER, figures, verdicts
from benchmarks.baseline import (
    Baseline,
    Figure,
    FigureRule,
    choose_baseline,
    decide,
    format_verdicts,
    load_rules,
)
from benchmarks.ceiling import BatchMeasurement, Ceiling
from benchmarks.engines import engines_under_test
from benchmarks.gate import GATES_FILE, load_thresholds
from benchmarks.phases import Phase
from benchmarks.results import Latency, PhaseResult, ServerDelta, read_raw
from benchmarks.server_process import RunningServer
from tests.support.models import build_test_model

RULE = FigureRule(min_relative=0.1, min_absolute=0.5)


def _throughput(candidate: tuple[float, ...], baseline: tuple[float, ...]) -> Figure:
    return Figure("saturation", "windows/s", True, candidate, baseline)


def _latency(candidate: tuple[float, ...], baseline: tuple[float, ...]) -> Figure:
    return Figure("overhead", "ms", False, candidate, baseline)


def test_the_margin_is_the_larger_of_the_spread_rule_and_the_floors() -> None:
    # Spread 40 (the baseline's range) x 2 = 80, above 10 % of the baseline's 300.
    noisy = decide(_throughput((300, 310), (280, 320)), RULE, spread_factor=2.0)
    assert (noisy.spread, noisy.margin) == (40, 80)
    # Repeats that agree by chance: the relative floor holds the margin at 10 % of 300.
    quiet = decide(_throughput((300, 301), (300, 300)), RULE, spread_factor=2.0)
    assert quiet.margin == pytest.approx(30)
    # A small latency: the absolute floor (0.5 ms) wins over 10 % of 2 ms.
    small = decide(_latency((2.0, 2.0), (2.0, 2.0)), RULE, spread_factor=2.0)
    assert small.margin == 0.5


@pytest.mark.parametrize(
    ("figure", "passed"),
    [
        (_throughput((250, 252), (300, 302)), False),  # 50 windows/s worse, margin 30
        (_throughput((290, 292), (300, 302)), True),  # 10 worse, within the margin
        (_throughput((400, 420), (300, 302)), True),  # better never fails
        (_latency((8.0, 8.2), (3.0, 3.1)), False),  # 5 ms slower, margin 0.5
        (_latency((3.3, 3.2), (3.0, 3.1)), True),  # 0.2 ms slower, within 0.5
        (_latency((1.0, 1.1), (3.0, 3.1)), True),  # faster
        # The same 5 ms slowdown inside a run this noisy is not a regression it can show.
        (_latency((8.0, 8.2), (3.0, 6.0)), True),
    ],
)
def test_the_candidate_fails_only_when_worse_by_more_than_the_margin(
    figure: Figure, passed: bool
) -> None:
    assert decide(figure, RULE, spread_factor=2.0).passed is passed


def test_a_side_without_measurements_fails_the_figure() -> None:
    assert not decide(_throughput((), (300,)), RULE, spread_factor=2.0).passed
    assert not decide(_latency((3.0,), ()), RULE, spread_factor=2.0).passed


def test_the_table_shows_each_run_the_margin_and_the_verdict() -> None:
    table = format_verdicts(
        [decide(_latency((8.0, 8.2), (3.0, 3.1)), RULE, spread_factor=2.0)], "title"
    )
    assert table.splitlines()[0] == "title"
    assert "8.10 (8.00, 8.20)" in table
    assert "3.05 (3.00, 3.10)" in table
    assert "+5.05" in table
    assert table.rstrip().endswith("FAIL")


def _phase(name: str, windows_per_s: float, median_ms: float, p99_ms: float) -> PhaseResult:
    user_class = "StreamUser" if name.startswith("streams") else "UnaryUser"
    latency = Latency(100, median_ms, median_ms, p99_ms, p99_ms)
    server = ServerDelta(10, 10, 1.0, 0.1, 1.0, 2.0, 1.0)
    return PhaseResult(name, user_class, 1, 5, 100, 0, (), windows_per_s, latency, server)


def test_the_figures_come_from_each_sides_repeats_against_one_ceiling() -> None:
    rules = load_rules(GATES_FILE)
    ceiling = Ceiling("m", "1", 48_000, 16_000, 1, 1, (BatchMeasurement(1, 500, 2.0, 3.0, 9),))
    streams = f"streams-{rules.streams}"
    runs = {
        "candidate": {
            "overhead": [_phase("overhead", 1, 9.0, 0), _phase("overhead", 1, 9.5, 0)],
            "users-16": [_phase("users-16", 300, 0, 0), _phase("users-16", 310, 0, 0)],
            streams: [_phase(streams, 0, 0, 20.0), _phase(streams, 0, 0, 24.0)],
        },
        "baseline": {
            "overhead": [_phase("overhead", 1, 4.0, 0), _phase("overhead", 1, 4.2, 0)],
            "users-16": [_phase("users-16", 305, 0, 0), _phase("users-16", 300, 0, 0)],
            streams: [_phase(streams, 0, 0, 21.0), _phase(streams, 0, 0, 22.0)],
        },
    }
    found = figures(runs, rules, ceiling)
    assert found[1].candidate == (7.0, 7.5)  # median minus batch-1 compute (2 ms)
    assert [verdict.passed for verdict in verdicts(found, rules)] == [True, False, True]
    assert ORDER == ("candidate", "baseline", "baseline", "candidate")


def test_the_committed_rules_pin_a_full_commit() -> None:
    rules = load_rules(GATES_FILE)
    assert len(rules.commit) == 40
    assert rules.spread_factor >= 1


def _git(folder: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), *arguments], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A git repository of two commits with server/ and proto/; returns it and the first."""
    root = tmp_path_factory.mktemp("repo")
    _git(root, "init", "--quiet")
    for name in ("server", "proto", "docs"):
        (root / name).mkdir()
        (root / name / "marker.txt").write_text("first\n")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "one")
    first = _git(root, "rev-parse", "HEAD")
    (root / "server" / "marker.txt").write_text("second\n")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-am", "two")
    return root, first


def test_the_pinned_commit_is_checked_out_apart_from_the_tree(
    repository: tuple[Path, str], tmp_path: Path
) -> None:
    root, first = repository
    found = choose_baseline(first[:8], root=root, checkouts=tmp_path)
    assert isinstance(found, Baseline)
    assert (found.commit, found.reason) == (first, "the pinned commit")
    # The commit's server/ and proto/, not the working tree's; nothing else.
    assert (found.source / "server" / "marker.txt").read_text() == "first\n"
    assert (found.source / "proto" / "marker.txt").is_file()
    assert not (found.source / "docs").exists()
    assert (root / "server" / "marker.txt").read_text() == "second\n"


def test_the_newest_release_tag_wins_over_the_pin(
    repository: tuple[Path, str], tmp_path: Path
) -> None:
    root, first = repository
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(root), str(clone)], check=True)
    _git(clone, "tag", "v0.9.0", first)
    _git(clone, "tag", "v0.10.0", "HEAD")
    found = choose_baseline(first, root=clone, checkouts=tmp_path / "checkouts")
    assert isinstance(found, Baseline)
    assert found.reason == "tag v0.10.0"
    assert (found.source / "server" / "marker.txt").read_text() == "second\n"


def test_without_git_or_the_commit_it_says_why_instead_of_failing(
    repository: tuple[Path, str], tmp_path: Path
) -> None:
    root, _ = repository
    missing = choose_baseline("0" * 40, root=root, checkouts=tmp_path)
    assert missing == f"the baseline {'0' * 40} (the pinned commit) is not in this repository"
    shallow = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "--quiet", "--depth", "1", f"file://{root}", str(shallow)], check=True
    )
    first_only_in_history = _git(root, "rev-parse", "HEAD~1")
    reason = choose_baseline(first_only_in_history, root=shallow, checkouts=tmp_path)
    assert isinstance(reason, str)
    assert reason.endswith("is not in this repository (this is a shallow clone)")
    plain = tmp_path / "plain"
    plain.mkdir()
    reason = choose_baseline("abcdef0", root=plain, checkouts=tmp_path)
    assert isinstance(reason, str)
    assert "is not a git repository" in reason


def _rows(kind: str, latency_ms: float, count: int = 40) -> str:
    lines = ["type,name,end_time_s,latency_ms,windows,error"]
    lines += [f"{kind},Classify,{1000 + i * 0.1:.1f},{latency_ms},3," for i in range(count)]
    return "\n".join(lines) + "\n"


def test_the_gate_runs_each_figure_abba_on_two_servers_and_fails_a_slower_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The orchestration without servers: fake servers and phases, real pooling and verdicts."""
    sources = {name: tmp_path / name for name in ("candidate", "baseline")}
    for source in sources.values():
        (source / "server" / "mozart_server").mkdir(parents=True)
    ran: list[tuple[str, str]] = []

    @contextmanager
    def fake_server(*_: Any, source: Path, **__: Any) -> Iterator[RunningServer]:
        name = next(name for name, tree in sources.items() if tree == source)
        module = source / "server" / "mozart_server" / "__init__.py"
        yield RunningServer(name, "", 0, module_file=str(module))

    def fake_phase(phase: Phase, *, title: str, server: RunningServer, folder: Path,
                   **_: Any) -> PhaseResult:  # fmt: skip
        ran.append((phase.name, server.address))
        # The candidate answers one-window calls 5 ms later; everything else is equal.
        slow = 5.0 if server.address == "candidate" and phase.name == "overhead" else 0.0
        path = folder / f"{phase.name}_requests.csv"
        kind = "window" if phase.user_class == "StreamUser" else "grpc"
        path.write_text(_rows(kind, 3.0 + slow + 0.1 * len(ran) % 0.3))
        server_delta = ServerDelta(1, 1, 1, 0, 1, 1, 1.0)
        return read_raw(path, name=phase.name, user_class=phase.user_class, users=phase.users,
                        seconds=phase.seconds, server=server_delta)  # fmt: skip

    ceiling = Ceiling("tiny", "1", 8_000, 16_000, 1, 1, (BatchMeasurement(1, 100, 1.0, 2.0, 9),))
    monkeypatch.setattr(abba, "server_process", fake_server)
    monkeypatch.setattr(abba, "measure_phase", fake_phase)
    monkeypatch.setattr(abba, "measure_ceiling", lambda *_, **__: ceiling)
    repository = tmp_path / "models"
    build_test_model(repository)
    (engine,) = engines_under_test(repository, "tiny", {}, None)
    args = argparse.Namespace(
        candidate_src=sources["candidate"], model="tiny", model_repository=repository,
        clips="clips", load_cpus=None, server_cpus=None,
    )  # fmt: skip
    rules = load_rules(GATES_FILE)
    floors = load_thresholds(GATES_FILE, "gate")
    folder = tmp_path / "run"
    folder.mkdir()
    baseline = Baseline("ab" * 20, "the pinned commit", sources["baseline"])
    code = abba.gate_against_baseline(
        abba.GateRun(args, engine, baseline, rules, floors, floors, 250, folder, "t")
    )
    assert code == 1
    streams = f"streams-{rules.streams}"
    assert ran == [(phase, side) for phase in ("overhead", "users-16", streams) for side in ORDER]
    result = json.loads((folder / "baseline.json").read_text())
    assert [verdict["passed"] for verdict in result["verdicts"]] == [True, False, True]
    assert result["candidate_module"].startswith(str(sources["candidate"]))
    assert result["baseline_module"].startswith(str(sources["baseline"]))
    for side in ("candidate-1", "candidate-2", "baseline-1", "baseline-2"):
        assert (folder / side / "overhead_requests.csv").is_file()
    pooled = json.loads((folder / "candidate" / "summary.json").read_text())
    assert pooled["phases"][0]["requests"] == 80  # both repeats
    assert (folder / "report.md").read_text().count("FAIL") == 1
