"""The gate: each threshold fails on its own regression, and the command's exit code says so."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.ceiling import BatchMeasurement, Ceiling
from benchmarks.gate import GATES_FILE, Thresholds, evaluate, load_thresholds, main
from benchmarks.results import Latency, PhaseResult, ServerDelta, Summary

THRESHOLDS = Thresholds(
    max_failure_ratio=0.0,
    min_saturation_fraction=0.5,
    max_median_overhead_ms=5.0,
    streams=4,
    max_stream_p99_ms=100.0,
)
SERVER = ServerDelta(1000, 100, 10.0, 1.0, 20.0, 25.0, 5.0)


def _phase(name: str, user_class: str, users: int, windows_per_s: float, median_ms: float,
           p99_ms: float, failures: int = 0) -> PhaseResult:  # fmt: skip
    latency = Latency(100, median_ms, median_ms * 1.5, p99_ms, p99_ms * 2)
    return PhaseResult(
        name, user_class, users, 10, 100, failures, (), windows_per_s, latency, SERVER
    )


def _summary(*phases: PhaseResult) -> Summary:
    ceiling = Ceiling(
        "m", "1", 48_000, 16_000, 1, 1,
        (BatchMeasurement(1, 250.0, 4.0, 6.0, 100), BatchMeasurement(8, 400.0, 20.0, 25.0, 50)),
    )  # fmt: skip
    return Summary("t", "quick", "m", "clips", 1500, {}, 2, ceiling, phases)


GOOD = (
    _phase("overhead", "UnaryUser", 1, 200, median_ms=6.0, p99_ms=9.0),
    _phase("users-16", "UnaryUser", 16, 300, median_ms=50.0, p99_ms=90.0),
    _phase("streams-4", "StreamUser", 4, 3, median_ms=20.0, p99_ms=60.0),
)


def _verdicts(summary: Summary) -> list[bool]:
    return [check.passed for check in evaluate(summary, THRESHOLDS)]


def test_a_healthy_run_passes_every_check() -> None:
    summary = _summary(*GOOD)
    assert summary.saturation_fraction == pytest.approx(300 / 400)
    assert summary.median_overhead_ms == pytest.approx(6.0 - 4.0)
    assert _verdicts(summary) == [True, True, True, True]


def test_each_regression_fails_its_own_check() -> None:
    overhead, users, streams = GOOD
    failing = replace(users, failures=1)
    assert _verdicts(_summary(overhead, failing, streams)) == [False, True, True, True]
    slow = replace(users, windows_per_s=150)
    assert _verdicts(_summary(overhead, slow, streams)) == [True, False, True, True]
    delayed = replace(overhead, latency=replace(overhead.latency, median_ms=54.0))
    assert _verdicts(_summary(delayed, users, streams)) == [True, True, False, True]
    laggy = replace(streams, latency=replace(streams.latency, p99_ms=180.0))
    assert _verdicts(_summary(overhead, users, laggy)) == [True, True, True, False]


def test_a_phase_that_did_not_run_fails() -> None:
    overhead, users, _ = GOOD
    checks = evaluate(_summary(overhead, users), THRESHOLDS)
    assert not checks[3].passed
    assert checks[3].measured == "not run"
    assert not evaluate(_summary(users), THRESHOLDS)[2].passed


def test_sustained_streams_counts_only_runs_within_the_limit() -> None:
    overhead, users, streams = GOOD
    heavy = replace(streams, name="streams-16", users=16,
                    latency=replace(streams.latency, p99_ms=140.0))  # fmt: skip
    summary = _summary(overhead, users, streams, heavy)
    assert summary.sustained_streams(100.0) == 4
    assert summary.sustained_streams(150.0) == 16
    assert summary.ceiling_streams == pytest.approx(400 / (1000 / 1500))


def test_the_command_reads_summary_json_and_exits_non_zero_on_a_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gates = tmp_path / "gates.toml"
    gates.write_text(
        "[gate]\nmax_failure_ratio = 0.0\nmin_saturation_fraction = 0.5\n"
        "max_median_overhead_ms = 5.0\nstreams = 4\nmax_stream_p99_ms = 100.0\n"
    )
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    _summary(*GOOD).write(good)
    assert Summary.read(good) == _summary(*GOOD)
    _summary(GOOD[0], replace(GOOD[1], windows_per_s=100), GOOD[2]).write(bad)
    assert main([str(good), "--gates", str(gates)]) == 0
    assert main([str(bad), "--gates", str(gates)]) == 1
    table = capsys.readouterr().out
    assert "FAIL    0.250 (100 / 400 windows/s)" in table


def test_the_committed_gates_are_looser_than_the_targets() -> None:
    gate = load_thresholds(GATES_FILE, "gate")
    targets = load_thresholds(GATES_FILE, "targets")
    assert gate.min_saturation_fraction <= targets.min_saturation_fraction
    assert gate.max_median_overhead_ms >= targets.max_median_overhead_ms
    assert gate.max_stream_p99_ms >= targets.max_stream_p99_ms
    assert gate.max_failure_ratio == targets.max_failure_ratio == 0.0
