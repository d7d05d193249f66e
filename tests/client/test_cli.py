"""`mozart classify/stream/models/health` run as a user runs them, against a real server."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import soundfile

from mozart_client import cli
from tests.support.audio import music_clip
from tests.support.server import InProcessServer

RATE = 16_000


def mozart(
    *args: str, dispatcher: bool = False, stdin: bytes | None = None, **env_vars: str
) -> subprocess.CompletedProcess[str]:
    """Runs the client commands; through the `mozart` dispatcher when asked.

    The dispatcher loads every installed distribution (the trainer imports torch),
    so most tests call the client's own entry point, which starts much faster.

    Args:
        args: The command line after `mozart`.
        dispatcher: Run `mozart` itself (`mozart_proto.cli`).
        stdin: Bytes piped into the command; None for no input.
        env_vars: Extra environment variables.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("MOZART_")}
    env.pop("GRPC_VERBOSITY", None)
    env["CI"] = "true"  # as on CI machines, where some libraries print on import
    env.update(env_vars)
    module = "mozart_proto.cli" if dispatcher else "mozart_client.cli"
    completed = subprocess.run(
        [sys.executable, "-m", module, *args],
        input=b"" if stdin is None else stdin,
        capture_output=True,
        timeout=120,
        check=False,
        env=env,
    )
    return subprocess.CompletedProcess(
        completed.args,
        completed.returncode,
        completed.stdout.decode(),
        completed.stderr.decode(),
    )


def run_cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    stdin: bytes = b"",
) -> tuple[int, str, str]:
    """Runs the client commands in this process (faster than a subprocess), with `stdin`
    as standard input; returns the exit code, stdout and stderr."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(stdin))))
    try:
        code = cli.main(list(args))
    except SystemExit as exit_:  # argparse's usage errors and --help
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def json_lines(text: str) -> list[dict[str, Any]]:
    """What `--json` prints: one JSON object per line."""
    return [json.loads(line) for line in text.splitlines()]


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
    (document,) = json_lines(as_json.stdout)
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
    assert "over 5 windows" in lines[-1]
    assert "smoothed" not in completed.stderr


def test_stream_with_smoothing_shows_the_smoothed_labels_and_says_so(
    server, clip, capsys, monkeypatch
) -> None:
    args = ("stream", str(clip), "--server", server.address, "--hop-ms", "250")
    code, out, err = run_cli(capsys, monkeypatch, *args, "--smoothing", "0.9")
    assert code == 0, err
    assert "smoothed (EMA, weight 0.9" in err
    header, *rows, _ = out.splitlines()
    assert header.split()[:3] == ["WINDOW", "TIME_S", "SMOOTHED"]
    _, out, _ = run_cli(capsys, monkeypatch, *args, "--smoothing", "0.9", "--json")
    as_json = json_lines(out)
    windows = [event for event in as_json if event["type"] == "WindowResult"]
    # Each row shows the smoothed best label and score, not the raw ones.
    shown = [(row.split()[2], float(row.split()[3])) for row in rows]
    best = [(w["smoothed_top_k"][0]["label"], w["smoothed_top_k"][0]["score"]) for w in windows]
    assert [label for label, _ in shown] == [label for label, _ in best]
    assert [score for _, score in shown] == pytest.approx([s for _, s in best], abs=0.006)
    raw = [w["top_k"][0]["score"] for w in windows]
    assert any(abs(a - b) > 0.01 for a, b in zip(raw, [s for _, s in best], strict=True))


def test_a_one_window_clip_reads_one_window(server, tmp_path: Path, capsys, monkeypatch) -> None:
    short = tmp_path / "short.wav"
    soundfile.write(short, music_clip(0.5, RATE, seed=3), RATE, subtype="PCM_16")
    code, out, err = run_cli(capsys, monkeypatch, "stream", str(short), "--server", server.address)
    assert code == 0, err
    assert "over 1 window," in out.splitlines()[-1]


def test_stream_json_lines_carry_latency_and_type(server, clip: Path) -> None:
    completed = mozart("stream", str(clip), "--server", server.address, "--json", "--realtime")
    assert completed.returncode == 0, completed.stderr
    events = [json.loads(line) for line in completed.stdout.splitlines()]
    assert [e["type"] for e in events] == ["WindowResult"] * 5 + ["Summary"]
    assert all(e["latency_ms"] >= 0 for e in events[:-1])


def test_models_and_health(server: InProcessServer) -> None:
    models = mozart("models", "--server", server.address, dispatcher=True)
    assert models.returncode == 0, models.stderr
    row = models.stdout.splitlines()[1]
    assert row.split()[:3] == ["tiny", "1", "multiclass"]
    # Every label, not the first few and "...".
    assert row.endswith("4: baroque, classical, jazz, romantic")
    health = mozart("health", "--server", server.address, "--json")
    assert health.returncode == 0, health.stderr
    assert [s["status"] for s in json_lines(health.stdout)] == ["SERVING", "SERVING"]


def test_health_reports_every_service_asked_for(server, capsys, monkeypatch) -> None:
    args = ("health", "--service", "liveness", "--service", "nope", "--server", server.address)
    code, out, err = run_cli(capsys, monkeypatch, *args)
    assert code == 6  # NOT_FOUND: the server knows no service "nope"
    assert [line.split() for line in out.splitlines()] == [
        ["SERVICE", "STATUS"],
        ["liveness", "SERVING"],
        ["nope", "SERVICE_UNKNOWN"],
    ]
    assert "error: nope: NOT_FOUND" in err
    as_json = json_lines(run_cli(capsys, monkeypatch, *args, "--json")[1])
    assert [(d["service"], d["status"]) for d in as_json] == [
        ("liveness", "SERVING"),
        ("nope", "SERVICE_UNKNOWN"),
    ]
    assert as_json[1]["code"] == "NOT_FOUND"


def test_json_failures_are_lines_with_their_status_name(server, clip, capsys, monkeypatch):
    args = ("stream", str(clip), "--server", server.address, "--json", "--model", "nope")
    code, out, _ = run_cli(capsys, monkeypatch, *args)
    assert code == 6
    (failure,) = json_lines(out)
    assert failure["code"] == "NOT_FOUND"
    assert failure["error"]
    code, out, _ = run_cli(capsys, monkeypatch, "health", "--server", "127.0.0.1:1", "--json",
                           "--timeout-s", "2")  # fmt: skip
    assert code == 3
    assert json_lines(out)[-1]["code"] == "UNAVAILABLE"


def test_each_command_help_gives_its_own_timeout_default(capsys, monkeypatch) -> None:
    classify_help = " ".join(run_cli(capsys, monkeypatch, "classify", "--help")[1].split())
    assert "deadline of each call in seconds (default 10)" in classify_help
    stream_help = " ".join(run_cli(capsys, monkeypatch, "stream", "--help")[1].split())
    assert "deadline of the whole stream in seconds (default: none)" in stream_help


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
