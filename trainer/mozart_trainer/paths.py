"""Project paths, importable without the heavy libraries (the `mozart` command loads it)."""

from __future__ import annotations

from pathlib import Path


def project_root() -> Path:
    """The repository root (two levels above this package's folder)."""
    return Path(__file__).resolve().parents[2]
