"""Data test fixtures: the smoke corpus, built once per session with the real renderer."""

from __future__ import annotations

from pathlib import Path

import pytest

from mozart_proto.cli import main


@pytest.fixture(scope="session")
def smoke_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mozart data build-corpus --smoke` into a fresh folder (music21 -> MIDI -> FluidSynth)."""
    root = tmp_path_factory.mktemp("smoke") / "corpus"
    assert main(["data", "build-corpus", "--smoke", "--no-progress", "--out", str(root)]) == 0
    return root
