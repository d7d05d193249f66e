"""`make demo`'s script runs end to end: a real server on the default model, every bundled clip."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_streams_every_clip_and_stops_its_server_cleanly() -> None:
    clips = sorted(path.name for path in (ROOT / "demo" / "clips").glob("*.flac"))
    # APP_ENV=dev would make a server log text; the demo must not depend on the environment.
    env = {**os.environ, "APP_ENV": "dev"}
    completed = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "run_demo.py"), "--fast"],
        capture_output=True, text=True, env=env, check=False, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    for clip in clips:
        assert f"\n{clip} " in out, clip
    assert len(re.findall(r"^  summary over \d+ windows?", out, flags=re.M)) == len(clips)
    assert "server stopped with SIGTERM: exit code 0" in out
    # The true label (the composer the file name starts with) beside every prediction.
    verdicts = re.findall(r"^  predicted (\w+|-), true (\w+): (right|wrong)$", out, flags=re.M)
    assert [truth for _, truth, _ in verdicts] == [clip.split("-")[0] for clip in clips]
    assert all((label == truth) == (verdict == "right") for label, truth, verdict in verdicts)
    rows = re.findall(r"^ +\d+ +[\d.]+-[\d.]+ +\S+ +[\d.]+ +(\w+) +(right|wrong) ", out, re.M)
    assert rows
    assert {truth for truth, _ in rows} == {clip.split("-")[0] for clip in clips}
    right = sum(verdict == "right" for _, _, verdict in verdicts)
    windows_right = sum(verdict == "right" for _, verdict in rows)
    assert (
        f"demo accuracy: {right}/{len(clips)} clips right ({right / len(clips):.2f}), "
        f"{windows_right}/{len(rows)} windows right"
    ) in out
