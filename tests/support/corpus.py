"""The default corpus (data/corpus/default), built or reused as `make train` does.

Several tests read it, and pytest-xdist may run them at the same time in different
workers: the build runs under a file lock, so one worker builds and the others reuse.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CORPUS = ROOT / "data" / "corpus" / "default"


def default_corpus() -> Path:
    """Builds the default corpus unless it is already there; returns its folder."""
    DEFAULT_CORPUS.parent.mkdir(parents=True, exist_ok=True)
    with (DEFAULT_CORPUS.parent / ".default.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build = subprocess.run(
            [sys.executable, "-m", "mozart_proto.cli", "data", "build-corpus",
             "--out", str(DEFAULT_CORPUS), "--no-progress"],
            capture_output=True, text=True, check=False, timeout=1800,
        )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    return DEFAULT_CORPUS
