"""Every bash and python example of docs/http.md runs against a real server on the default
model, from the repository root, and succeeds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import InProcessServer, running_server

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "http.md"
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXAMPLES = BLOCK.findall(DOC.read_text())


@pytest.fixture(scope="module")
def default_model_server() -> Iterator[InProcessServer]:
    with running_server(ROOT / "models") as server:
        yield server


def test_the_doc_has_examples() -> None:
    assert len(EXAMPLES) >= 6
    assert sum(1 for kind, _ in EXAMPLES if kind == "python") >= 2


@pytest.mark.parametrize(("kind", "code"), EXAMPLES, ids=[f"{k}-{i}" for i, (k, _) in
                                                          enumerate(EXAMPLES)])  # fmt: skip
def test_example_runs(default_model_server: InProcessServer, kind: str, code: str) -> None:
    env = dict(os.environ, MOZART_HTTP=f"127.0.0.1:{default_model_server.http_port}")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = ["bash", "-euo", "pipefail", "-c", code] if kind == "bash" else [
        sys.executable, "-c", code]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    if "-i " not in code:
        assert "error" not in done.stdout
