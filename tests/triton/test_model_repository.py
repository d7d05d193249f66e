"""Triton's model-repository extension with Triton's own client (`tritonclient[grpc]`).

tritonclient's get_model_repository_index, load_model and unload_model against a
real Mozart server: in explicit mode they change what serves, with readiness
and inference agreeing at every step; in none mode load and unload are refused
with FAILED_PRECONDITION and nothing changes. The client runs in a child
process (see tritonclient_repository.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.audio import music_clip
from tests.support.models import build_test_model
from tests.support.server import InProcessServer, running_server

LABELS = 4
ROWS = 3
SCRIPT = Path(__file__).with_name("tritonclient_repository.py")


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("repository")
    build_test_model(models, "tiny", "1", seed=0)
    build_test_model(models, "other", "1", seed=7)
    return models


@pytest.fixture(scope="module")
def windows_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("windows") / "windows.npy"
    np.save(path, np.stack([music_clip(0.5, 16_000, seed=seed) for seed in range(ROWS)]))
    return path


def _session(server: InProcessServer, windows_file: Path, mode: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), server.address, str(windows_file), mode],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


def _entries(index: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str]]:
    return {
        (entry["name"], entry.get("version", "")): (entry.get("state", ""), entry.get("reason", ""))
        for entry in index.get("models", [])
    }


@pytest.fixture(scope="module")
def explicit(
    repository: Path, windows_file: Path
) -> Iterator[tuple[dict[str, Any], InProcessServer]]:
    with running_server(repository, model_control_mode="explicit") as server:
        yield _session(server, windows_file, "explicit"), server


def test_the_index_lists_every_version_ready(explicit) -> None:
    report, _ = explicit
    assert _entries(report["index"]) == {
        ("other", "1"): ("READY", ""),
        ("tiny", "1"): ("READY", ""),
    }
    assert report["ready_before"] is True
    assert report["infer_before"]["shape"] == [ROWS, LABELS]


def test_unload_makes_the_model_not_ready_and_inference_not_found(explicit) -> None:
    report, _ = explicit
    assert report["unload"]["status"] == "OK"
    assert report["ready_after_unload"] is False
    assert _entries(report["index_after_unload"])[("tiny", "1")] == ("UNAVAILABLE", "unloaded")
    assert _entries(report["index_after_unload"])[("other", "1")] == ("READY", "")
    assert report["infer_after_unload"]["status"] == "StatusCode.NOT_FOUND"
    assert "not loaded" in report["infer_after_unload"]["message"]


def test_load_serves_the_version_again_with_the_same_answers(explicit) -> None:
    report, server = explicit
    assert report["load"]["status"] == "OK"
    assert report["ready_after_load"] is True
    after = report["infer_after_load"]
    assert after["model_version"] == "1"
    assert after["shape"] == [ROWS, LABELS]
    np.testing.assert_allclose(np.array(after["probabilities"]).sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        after["probabilities"], report["infer_before"]["probabilities"], rtol=1e-5, atol=1e-6
    )
    assert _entries(report["index_after_load"])[("tiny", "1")] == ("READY", "")
    assert report["server_ready_at_end"] is True
    # One unload and one load of tiny after the start-up load; the old engine closed.
    assert server.metric("mozart_model_swaps_total", model="tiny") == 3
    assert server.metric("mozart_engines_open") == 2
    assert server.metric("mozart_version_leases") == 0


def test_load_refuses_what_mozart_cannot_do(explicit) -> None:
    report, _ = explicit
    assert report["load_with_config"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "not supported" in report["load_with_config"]["message"]
    assert report["load_unknown"]["status"] == "StatusCode.NOT_FOUND"
    assert "no-such-model" in report["load_unknown"]["message"]


def test_load_and_unload_are_failed_precondition_in_none_mode(
    repository: Path, windows_file: Path
) -> None:
    with running_server(repository, model_control_mode="none") as server:
        report = _session(server, windows_file, "none")
        assert server.metric("mozart_model_swaps_total", model="tiny") == 1
    for call in ("load", "unload"):
        assert report[call]["status"] == "StatusCode.FAILED_PRECONDITION"
        assert "model_control_mode" in report[call]["message"]
    assert _entries(report["index"])[("tiny", "1")] == ("READY", "")
    assert report["ready_after"] is True
    assert report["infer_after"]["shape"] == [ROWS, LABELS]
