"""The SDK installs alone: a clean venv with only mozart-proto and mozart-client, used
against a running server.

pip installs the two local folders under constraints.txt; their few dependencies
(grpcio, grpcio-health-checking, protobuf, numpy) come from pip's cache or PyPI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest
import soundfile

from tests.support.audio import music_clip
from tests.support.server import InProcessServer

ROOT = Path(__file__).resolve().parents[2]

USE_THE_SDK = textwrap.dedent(
    """
    import importlib.util, json, sys
    from mozart_client import Client, Summary, WindowResult

    address, clip = sys.argv[1], sys.argv[2]
    with Client(address) as client:
        result = client.classify(clip)
        events = list(client.stream(clip, hop_ms=250))
        health = client.health()
    print(json.dumps({
        "summary_windows": result.summary.window_count,
        "stream_windows": sum(isinstance(e, WindowResult) for e in events),
        "ends_with_summary": isinstance(events[-1], Summary),
        "serving": health.serving,
        "importable": {name: importlib.util.find_spec(name) is not None
                       for name in ("mozart_server", "onnxruntime", "torch", "soundfile")},
    }))
    """
)


@pytest.fixture(scope="module")
def sdk_python(tmp_path_factory) -> Path:
    folder: Path = tmp_path_factory.mktemp("sdk-venv")
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    completed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-c", str(ROOT / "constraints.txt"), str(ROOT / "proto"), str(ROOT / "clients")],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return python


@pytest.mark.slow
def test_sdk_alone_classifies_and_streams(sdk_python: Path, server: InProcessServer, tmp_path):
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, music_clip(1.5, 16_000, seed=5), 16_000, subtype="PCM_16")
    completed = subprocess.run(
        [str(sdk_python), "-c", USE_THE_SDK, server.address, str(clip)],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["summary_windows"] == 5
    assert report["stream_windows"] == 5
    assert report["ends_with_summary"]
    assert report["serving"]
    assert report["importable"] == {
        "mozart_server": False, "onnxruntime": False, "torch": False, "soundfile": False
    }  # fmt: skip


@pytest.mark.slow
def test_sdk_alone_has_the_client_commands(sdk_python: Path) -> None:
    mozart = sdk_python.parent / "mozart"
    completed = subprocess.run(
        [str(mozart), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    for command in ("classify", "stream", "models", "health"):
        assert command in completed.stdout
    assert "serve" not in completed.stdout.split()
    assert sys.executable != str(sdk_python)
