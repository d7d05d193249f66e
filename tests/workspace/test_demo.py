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
