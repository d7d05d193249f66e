"""Five seconds of digital silence on the shipped model: silent, not "beethoven 0.63".

The real default model (models/composer-cnn/1, whose model.json carries the thresholds
`mozart thresholds` measured), a real server, the SDK and the CLI.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from mozart_client import Client
from tests.client.test_cli import run_cli
from tests.support.server import InProcessServer, running_server

ROOT = Path(__file__).resolve().parents[2]
COMPOSER = ROOT / "models" / "composer-cnn" / "1"
RATE = 16_000


@pytest.fixture(scope="module")
def composer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    repository = tmp_path_factory.mktemp("composer")
    shutil.copytree(
        COMPOSER, repository / "composer-cnn" / "1", ignore=shutil.ignore_patterns("optimize")
    )
    with running_server(repository) as server:
        yield server


@pytest.fixture(scope="module")
def silence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = tmp_path_factory.mktemp("silence") / "silence.wav"
    soundfile.write(path, np.zeros(5 * RATE, np.float32), RATE, subtype="PCM_16")
    return path


def test_digital_silence_is_silent_and_a_demo_clip_is_not(
    composer: InProcessServer, silence: Path
) -> None:
    with Client(composer.address) as client:
        quiet = client.classify(silence, model="composer-cnn")
        music = client.classify(ROOT / "demo" / "clips" / "bach-bwv284.flac", model="composer-cnn")
    assert quiet.windows
    assert all(w.silent and not w.low_confidence for w in quiet.windows)
    assert quiet.summary.silent_window_count == quiet.summary.window_count
    assert quiet.summary.label == ""  # no composer for silence
    assert not any(w.silent for w in music.windows)
    assert music.summary.silent_window_count == 0
    assert music.summary.label
    assert all(w.rms_dbfs > -52.9 for w in music.windows)


def test_the_cli_says_silent(composer: InProcessServer, silence: Path, capsys, monkeypatch) -> None:
    code, out, err = run_cli(
        capsys, monkeypatch, "classify", str(silence), "--server", composer.address, "--windows"
    )
    assert code == 0, err
    assert "(silent)" in out.splitlines()[1]  # the file's row: no label
    assert "silent" in out.splitlines()[1]
    code, out, err = run_cli(
        capsys, monkeypatch, "stream", str(silence), "--server", composer.address
    )
    assert code == 0, err
    lines = out.splitlines()
    assert all("(silent)" in line for line in lines[1:-1])
    assert lines[-1].startswith("summary: (silent) over ")
    assert "silent," in lines[-1]
