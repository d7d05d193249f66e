"""`mozart classify/stream/models/health` run as a user runs them, against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from tests.support.audio import music_clip
from tests.support.server import InProcessServer

RATE = 16_000


def mozart(*args: str, dispatcher: bool = False) -> subprocess.CompletedProcess[str]:
    """Runs the client commands; through the `mozart` dispatcher when asked.

    The dispatcher loads every installed distribution (the trainer imports torch),
    so most tests call the client's own entry point, which starts much faster.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("MOZART_")}
    env["CI"] = "true"  # as on CI machines, where some libraries print on import
    module = "mozart_proto.cli" if dispatcher else "mozart_client.cli"
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path: Path = tmp_path_factory.mktemp("cli") / "clip.wav"
    soundfile.write(path, music_clip(1.5, RATE, seed=21), RATE, subtype="PCM_16")
    return path


def test_classify_prints_a_table_and_json(server: InProcessServer, clip: Path) -> None:
    table = mozart("classify", str(clip), "--server", server.address, "--hop-ms", "250")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    assert header.split()[:3] == ["FILE", "MODEL", "LABEL"]
    assert row.startswith(str(clip))
    assert "tiny:1" in row
    as_json = mozart("classify", str(clip), "--server", server.address, "--json")
    assert as_json.returncode == 0, as_json.stderr
    (document,) = json.loads(as_json.stdout)
    assert document["file"] == str(clip)
    assert document["result"]["summary"]["window_count"] == 5
    assert document["result"]["summary"]["top_k"][0]["label"] in document["result"]["labels"]


def test_stream_prints_one_line_per_window_then_the_summary(server, clip: Path) -> None:
    completed = mozart("stream", str(clip), "--server", server.address, "--hop-ms", "250")
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0].split()[:3] == ["WINDOW", "TIME_S", "LABEL"]
    assert [line.split()[0] for line in lines[1:-1]] == [str(i) for i in range(5)]
    assert lines[-1].startswith("summary: ")
    assert "5 windows" in lines[-1]


def test_stream_json_lines_carry_latency_and_type(server, clip: Path) -> None:
    completed = mozart("stream", str(clip), "--server", server.address, "--json", "--realtime")
    assert completed.returncode == 0, completed.stderr
    events = [json.loads(line) for line in completed.stdout.splitlines()]
    assert [e["type"] for e in events] == ["WindowResult"] * 5 + ["Summary"]
    assert all(e["latency_ms"] >= 0 for e in events[:-1])


def test_models_and_health(server: InProcessServer) -> None:
    models = mozart("models", "--server", server.address, dispatcher=True)
    assert models.returncode == 0, models.stderr
    assert models.stdout.splitlines()[1].split()[:3] == ["tiny", "1", "multiclass"]
    health = mozart("health", "--server", server.address, "--json")
    assert health.returncode == 0, health.stderr
    assert [s["status"] for s in json.loads(health.stdout)] == ["SERVING", "SERVING"]


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["health", "--server", "127.0.0.1:1", "--timeout-s", "3"], 3, "UNAVAILABLE"),
        (["classify", "/no/such.wav"], 5, "cannot read"),
        (["classify", "{clip}", "--model", "nope"], 6, "NOT_FOUND"),
        (["stream", "{clip}", "--model", "tiny", "--hop-ms", "100000"], 5, "INVALID_ARGUMENT"),
        (["health", "--service", "no.such.Service"], 6, "NOT_FOUND"),
        (["classify"], 2, "required"),
    ],
)
def test_each_failure_class_has_its_exit_code(server, clip, args, code, words) -> None:
    filled = [arg.format(clip=clip) for arg in args]
    if "--server" not in filled and filled != ["classify"]:
        filled += ["--server", server.address]
    completed = mozart(*filled)
    assert completed.returncode == code, completed.stderr
    assert words in completed.stderr
