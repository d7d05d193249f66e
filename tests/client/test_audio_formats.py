"""The SDK tells containers apart by asking libsndfile, so every container of the shared
list classifies from a path or bytes; without soundfile it lets the server detect."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from mozart_client import Client
from mozart_client.audio import clip_audio, stream_audio
from mozart_client.errors import InvalidInputError
from mozart_proto.v1 import audio_classifier_pb2 as pb
from tests.client.test_cli import mozart
from tests.support.audio import music_clip
from tests.support.server import InProcessServer, running_server

RATE = 16_000
FILES = [
    ("WAV", "PCM_24", "wav", pb.AUDIO_ENCODING_WAV),
    ("WAVEX", "FLOAT", "wav", pb.AUDIO_ENCODING_WAV),
    ("RF64", "PCM_16", "wav", pb.AUDIO_ENCODING_WAV),
    ("FLAC", "PCM_16", "flac", pb.AUDIO_ENCODING_FLAC),
    ("OGG", "VORBIS", "ogg", pb.AUDIO_ENCODING_OGG),
    ("OGG", "OPUS", "opus", pb.AUDIO_ENCODING_OGG),
    ("MP3", "MPEG_LAYER_III", "mp3", pb.AUDIO_ENCODING_MP3),
    ("AIFF", "PCM_16", "aiff", pb.AUDIO_ENCODING_AIFF),
]


@pytest.fixture
def client(server: InProcessServer) -> Iterator[Client]:
    with Client(server.address, timeout_s=30) as sdk:
        yield sdk


def _write(folder: Path, file_format: str, subtype: str, suffix: str) -> Path:
    path = folder / f"clip-{subtype.lower()}.{suffix}"
    soundfile.write(path, music_clip(1.0, RATE, seed=4), RATE, format=file_format, subtype=subtype)
    return path


@pytest.mark.parametrize(("file_format", "subtype", "suffix", "encoding"), FILES)
def test_every_container_classifies_from_a_path_and_from_bytes(
    client: Client, tmp_path: Path, file_format, subtype, suffix, encoding
) -> None:
    # Before: MP3 was "not WAV, FLAC or Ogg" in the SDK, and AIFF had no encoding at all.
    path = _write(tmp_path, file_format, subtype, suffix)
    assert clip_audio(path).format.encoding == encoding
    assert clip_audio(path.read_bytes()).format.encoding == encoding
    for audio in (path, path.read_bytes()):
        result = client.classify(audio, model="tiny")
        assert result.summary.window_count >= 3
        assert sum(result.summary.scores) == pytest.approx(1, abs=1e-4)


@pytest.mark.parametrize(("file_format", "subtype", "suffix", "encoding"), FILES)
def test_every_container_streams_from_a_path(
    client: Client, tmp_path: Path, file_format, subtype, suffix, encoding
) -> None:
    path = _write(tmp_path, file_format, subtype, suffix)
    events = list(client.stream(path, model="tiny"))
    assert events
    assert stream_audio(path).format.encoding in (
        pb.AUDIO_ENCODING_PCM_S16LE,
        pb.AUDIO_ENCODING_PCM_F32LE,
    )


def test_a_format_outside_the_list_is_named(tmp_path: Path) -> None:
    path = tmp_path / "clip.au"
    soundfile.write(path, np.zeros(1600, np.float32), RATE, format="AU", subtype="PCM_16")
    with pytest.raises(InvalidInputError, match=r"AU .*which Classify does not take"):
        clip_audio(path)
    with pytest.raises(InvalidInputError, match="none of WAV, FLAC, Ogg, MP3, AIFF"):
        clip_audio(b"\x01\x02\x03 not audio at all")
    wire = clip_audio(path, encoding="auto")  # the caller may still let the server decide
    assert wire.format.encoding == pb.AUDIO_ENCODING_AUTO


WITHOUT_SOUNDFILE = """
import sys
sys.modules["soundfile"] = None
from mozart_client.audio import clip_audio
print(clip_audio(bytes(100)).format.encoding)
"""


def test_without_soundfile_the_server_detects_the_container() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", WITHOUT_SOUNDFILE],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert int(completed.stdout) == pb.AUDIO_ENCODING_AUTO


def test_the_cli_classifies_mp3_and_aiff_and_names_what_it_refuses(
    model_repository: Path, tmp_path: Path
) -> None:
    # Before: `mozart classify song.mp3` exited 5 with "not WAV, FLAC or Ogg".
    mp3 = _write(tmp_path, "MP3", "MPEG_LAYER_III", "mp3")
    aiff = _write(tmp_path, "AIFF", "PCM_24", "aif")
    au = tmp_path / "clip.au"
    soundfile.write(au, np.zeros(1600, np.float32), RATE, format="AU", subtype="PCM_16")
    long_flac = tmp_path / "long.flac"
    soundfile.write(long_flac, np.zeros(RATE * 5, np.float32), RATE, subtype="PCM_16")
    with running_server(model_repository, max_stream_duration_s=3.0) as server:
        ok = mozart("classify", str(mp3), str(aiff), "--server", server.address)
        assert ok.returncode == 0, ok.stderr
        assert str(mp3) in ok.stdout
        assert str(aiff) in ok.stdout
        refused = mozart("classify", str(au), "--server", server.address)
        assert refused.returncode == 5
        assert "which Classify does not take" in refused.stderr
        assert "0x" not in refused.stderr
        too_long = mozart("classify", str(long_flac), "--server", server.address)
        assert too_long.returncode == 5, too_long.stderr
        assert "max_stream_duration_s" in too_long.stderr
