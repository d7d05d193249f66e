"""The `mozart` command lists the subcommands that installed distributions plug in."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def _run_mozart(*args: str, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    # CI=true as on CI machines, where some libraries print diagnostics on import.
    env = {**os.environ, "CI": "true"}
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "mozart_proto.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


def _install_plugin(root: Path) -> None:
    """Puts a tiny distribution with one `mozart.commands` entry point on a path."""
    (root / "mozart_plugin_example.py").write_text(
        textwrap.dedent(
            """
            def register(subparsers):
                parser = subparsers.add_parser("hello", help="say hello from a plugin")
                parser.add_argument("--name", default="world")
                parser.set_defaults(handler=lambda args: print("hello", args.name) or 7)
            """
        )
    )
    dist_info = root / "mozart_plugin_example-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mozart-plugin-example\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[mozart.commands]\nexample = mozart_plugin_example:register\n"
    )


def test_help_lists_plugged_in_commands(tmp_path: Path) -> None:
    _install_plugin(tmp_path)
    completed = _run_mozart("--help", extra_path=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "hello" in completed.stdout
    assert "say hello from a plugin" in completed.stdout


def test_plugged_in_command_runs_and_returns_its_exit_code(tmp_path: Path) -> None:
    _install_plugin(tmp_path)
    completed = _run_mozart("hello", "--name", "mozart", extra_path=tmp_path)
    assert completed.stdout.strip() == "hello mozart"
    assert completed.returncode == 7


def test_without_a_command_prints_help_and_exits_2() -> None:
    completed = _run_mozart()
    assert completed.returncode == 2
    assert "usage: mozart" in completed.stdout


def test_unknown_command_is_a_usage_error() -> None:
    completed = _run_mozart("no-such-command")
    assert completed.returncode == 2
    assert "invalid choice" in completed.stderr


def test_importing_the_renderer_prints_nothing_even_on_ci() -> None:
    """pyfluidsynth prints where it found its library when CI is set; we keep stdout clean."""
    completed = subprocess.run(
        [sys.executable, "-c", "import mozart_trainer.data.render"],
        capture_output=True,
        text=True,
        env={**os.environ, "CI": "true"},
        check=False,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == ""
