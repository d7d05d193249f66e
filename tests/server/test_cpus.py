"""Usable CPUs (affinity and cgroup quota), the auto layout rule, and its precedence.

A container's cgroup cannot be made here, so the cgroup files are fakes in a temp folder
laid out as /sys/fs/cgroup is (v2: cpu.max; v1: cpu/cpu.cfs_quota_us and cfs_period_us).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from mozart_server.cli import main
from mozart_server.cpus import Layout, cgroup_quota_cpus, default_layout, usable_cpus
from mozart_server.settings import CONFIG_FILE_VARIABLE, ServerSettings
from tests.support.server import running_server


def _v2(root: Path, text: str) -> Path:
    (root / "cpu.max").write_text(text + "\n")
    return root


def _v1(root: Path, quota: int, period: int = 100_000) -> Path:
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


def test_cgroup_v2_without_a_limit_leaves_the_affinity(tmp_path: Path) -> None:
    root = _v2(tmp_path, "max 100000")
    assert cgroup_quota_cpus(root) is None
    cpus = usable_cpus(root, affinity=8)
    assert (cpus.count, cpus.quota, cpus.bound_by) == (8, None, "affinity")


def test_cgroup_v2_quota_bounds_the_cpus(tmp_path: Path) -> None:
    root = _v2(tmp_path, "200000 100000")
    cpus = usable_cpus(root, affinity=64)
    assert (cpus.count, cpus.quota, cpus.bound_by) == (2, 2.0, "quota")


def test_a_fractional_quota_rounds_up(tmp_path: Path) -> None:
    assert usable_cpus(_v2(tmp_path, "150000 100000"), affinity=8).count == 2
    half = tmp_path / "half"
    half.mkdir()
    cpus = usable_cpus(_v2(half, "50000 100000"), affinity=8)
    assert (cpus.count, cpus.quota) == (1, 0.5)


def test_cgroup_v1_quota_and_period(tmp_path: Path) -> None:
    root = _v1(tmp_path, 300_000, 100_000)
    assert cgroup_quota_cpus(root) == 3.0
    assert usable_cpus(root, affinity=16).count == 3


def test_cgroup_v1_without_a_limit(tmp_path: Path) -> None:
    root = _v1(tmp_path, -1)
    assert cgroup_quota_cpus(root) is None
    assert usable_cpus(root, affinity=4).count == 4


def test_an_affinity_smaller_than_the_quota_wins(tmp_path: Path) -> None:
    cpus = usable_cpus(_v2(tmp_path, "800000 100000"), affinity=2)
    assert (cpus.count, cpus.bound_by) == (2, "affinity")


def test_no_cgroup_files_and_the_real_affinity(tmp_path: Path) -> None:
    # Missing or garbled files are no limit; the default affinity is this process's own.
    assert usable_cpus(tmp_path).count == len(os.sched_getaffinity(0))
    _v2(tmp_path, "garbage")
    assert cgroup_quota_cpus(tmp_path) is None


@pytest.mark.parametrize(
    ("cpus", "layout"),
    [(1, (2, 1)), (2, (2, 2)), (3, (2, 2)), (4, (2, 2)), (8, (4, 2)), (0, (2, 1))],
)
def test_the_auto_rule(cpus: int, layout: tuple[int, int]) -> None:
    assert default_layout(cpus) == Layout(*layout, allow_spinning=False)


def test_the_auto_rule_fits_around_an_explicit_value() -> None:
    assert default_layout(2, instances=2) == Layout(2, 1, False)
    assert default_layout(2, instances=1) == Layout(1, 2, False)
    assert default_layout(8, instances=2) == Layout(2, 4, False)
    assert default_layout(8, intra_op_threads=4) == Layout(2, 4, False)
    assert default_layout(2, intra_op_threads=0) == Layout(1, 0, False)  # 0: ORT chooses


def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MOZART_"):
            monkeypatch.delenv(name)


def test_auto_is_the_default_and_resolves_from_the_usable_cpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _clean_environment(monkeypatch)
    settings = ServerSettings()
    onnx = settings.engine.onnx
    expected = default_layout(usable_cpus().count)
    assert (onnx.instances, onnx.intra_op_threads, onnx.allow_spinning) == (
        expected.instances, expected.intra_op_threads, expected.allow_spinning,
    )  # fmt: skip
    assert onnx.usable_cpus == usable_cpus()
    sources = settings.sources()
    for name in ("instances", "intra_op_threads", "allow_spinning"):
        assert sources[name] == "auto"
    assert sources["max_batch_size"] == "default"


def test_explicit_flag_env_and_file_values_beat_auto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clean_environment(monkeypatch)
    config = tmp_path / "mozart.toml"
    config.write_text("allow_spinning = true\n[batching]\nmax_batch_size = 8\n"
                      "preferred_batch_sizes = [1, 8]\n")  # fmt: skip
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(config))
    monkeypatch.setenv("MOZART_INTRA_OP_THREADS", "3")
    settings = ServerSettings(instances=5)
    onnx = settings.engine.onnx
    assert (onnx.instances, onnx.intra_op_threads, onnx.allow_spinning) == (5, 3, True)
    assert settings.batching.max_batch_size == 8
    assert settings.sources() == {
        "instances": "flag", "intra_op_threads": "env", "allow_spinning": "file",
        "max_batch_size": "file", "max_queue_delay_us": "default",
        "preferred_batch_sizes": "file",
    }  # fmt: skip
    # A flag beats the variable, and an explicit 0 keeps its meaning (ORT chooses).
    assert ServerSettings(intra_op_threads=0).engine.onnx.intra_op_threads == 0


def test_auto_may_be_asked_for_explicitly_and_fits_around_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _clean_environment(monkeypatch)
    monkeypatch.setenv("MOZART_INSTANCES", "auto")
    settings = ServerSettings(intra_op_threads=1, allow_spinning="auto")
    onnx = settings.engine.onnx
    assert onnx.instances == default_layout(usable_cpus().count, intra_op_threads=1).instances
    assert settings.sources()["instances"] == "auto"
    assert settings.sources()["intra_op_threads"] == "flag"
    with pytest.raises(ValueError, match="instances"):
        ServerSettings(instances="several")


def test_a_real_server_logs_the_layout_once_at_start(
    model_repository: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="mozart_server.app"),
        running_server(model_repository, instances=2),
    ):
        pass
    lines = [record for record in caplog.records if record.getMessage() == "engine layout chosen"]
    assert len(lines) == 1
    line = lines[0].__dict__
    assert line["cpus"] == usable_cpus().count
    assert (line["instances"], line["intra_op_threads"]) == (
        2, default_layout(usable_cpus().count, instances=2).intra_op_threads,
    )  # fmt: skip
    assert line["sources"]["instances"] == "flag"
    assert line["sources"]["intra_op_threads"] == "auto"


def test_serve_refuses_a_config_file_that_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config-file", str(tmp_path / "missing.toml")]) == 2
    assert "--config-file" in capsys.readouterr().err
