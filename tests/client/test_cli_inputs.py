"""`mozart classify` and `stream` inputs: stdin, folders, patterns, --jobs, --mic; a real server."""

from __future__ import annotations

import io
import struct
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.client.test_cli import RATE, json_lines, mozart, run_cli
from tests.support.audio import music_clip
from tests.support.server import InProcessServer


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of clips: two at the top (WAV, FLAC), one in a subfolder, and a text file."""
    root = tmp_path_factory.mktemp("library")
    (root / "live").mkdir()
    soundfile.write(root / "a.wav", music_clip(1.0, RATE, seed=1), RATE, subtype="PCM_16")
    soundfile.write(root / "b.flac", music_clip(1.5, 22_050, seed=2), 22_050)
    soundfile.write(root / "live" / "c.wav", music_clip(2.0, RATE, seed=3), RATE)
    (root / "notes.txt").write_text("not audio")
    return root


def _int16(seconds: float, rate: int, seed: int, channels: int = 1) -> np.ndarray:
    mono = (music_clip(seconds, rate, seed=seed) * 32767).astype("<i2")
    return np.repeat(mono[:, None], channels, axis=1)


def _wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(samples.shape[1])
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(samples.tobytes())
    return buffer.getvalue()


def _arecord_wav(samples: np.ndarray, rate: int) -> bytes:
    """A WAV as `arecord -f S16_LE` writes one to a pipe: lengths unknown (0x7FFFFFFF)."""
    unknown = struct.pack("<I", 0x7FFFFFFF)
    channels = samples.shape[1]
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    return b"RIFF" + unknown + b"WAVE" + b"fmt " + fmt + b"data" + unknown + samples.tobytes()


def test_stream_reads_a_wav_and_raw_pcm_from_stdin(server: InProcessServer, capsys, monkeypatch):
    samples = _int16(1.5, RATE, seed=5)
    address = ("--server", server.address, "--json")
    # A real pipe, as in `arecord -f S16_LE | mozart stream -`.
    piped = mozart("stream", "-", *address, stdin=_arecord_wav(samples, RATE))
    assert piped.returncode == 0, piped.stderr
    from_wav = json_lines(piped.stdout)
    # The same audio as raw s16le stereo at 8 kHz, as `arecord -t raw -f S16_LE -c 2` gives it.
    stereo = _int16(1.5, 8_000, seed=5, channels=2)
    code, out, err = run_cli(
        capsys, monkeypatch, "stream", "-", *address, "--format", "s16le", "--rate", "8000",
        "--channels", "2", stdin=stereo.tobytes(),
    )  # fmt: skip
    assert code == 0, err
    from_raw = json_lines(out)
    assert [e["type"] for e in from_wav] == ["WindowResult"] * 5 + ["Summary"]
    assert [e["type"] for e in from_raw] == ["WindowResult"] * 5 + ["Summary"]
    assert from_wav[-1]["audio_duration_ms"] == from_raw[-1]["audio_duration_ms"] == 1500
    # The chunk sizes come from the audio's own rate: latency is measured per window.
    assert all(e["latency_ms"] is not None for e in from_raw[:-1])


def test_classify_reads_stdin_and_refuses_what_it_cannot_read(server, capsys, monkeypatch):
    def run(*args: str, stdin: bytes) -> tuple[int, str, str]:
        return run_cli(capsys, monkeypatch, *args, "--server", server.address, stdin=stdin)

    samples = _int16(1.0, RATE, seed=6)
    code, out, err = run("classify", "-", "--json", stdin=_wav_bytes(samples, RATE))
    assert code == 0, err
    (document,) = json_lines(out)
    assert document["file"] == "-"
    assert document["result"]["summary"]["window_count"] == 3
    code, out, err = run("classify", "-", "--json", "--rate", str(RATE), stdin=samples.tobytes())
    assert code == 0, err
    raw_summary = json_lines(out)[0]["result"]["summary"]
    assert raw_summary["scores"] == document["result"]["summary"]["scores"]
    # Raw PCM cut mid-frame, and a stream from stdin that is not a WAV: exit 5, said why.
    code, out, err = run("classify", "-", "--json", "--format", "f32le", "--rate", "16000",
                         stdin=b"\0" * 6)  # fmt: skip
    assert code == 5
    assert json_lines(out) == [
        {"file": "-", "error": err.split("error: ")[1].strip(), "code": "INVALID_ARGUMENT"}
    ]
    assert "ends mid-frame" in err
    code, _, err = run("stream", "-", stdin=b"ID3" + b"\0" * 400)
    assert code == 5
    assert "stdin is not a WAV; for raw PCM give --format" in err


def test_folders_and_patterns_expand_in_order(server, library: Path, capsys, monkeypatch):
    def run(*args: str) -> tuple[int, str, str]:
        return run_cli(capsys, monkeypatch, "classify", *args, "--server", server.address)

    code, out, err = run(str(library))
    assert code == 0, err
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert names == [str(library / "a.wav"), str(library / "b.flac")]
    _, out, _ = run(str(library), "--recursive", "--json")
    assert [d["file"] for d in json_lines(out)] == [
        str(library / "a.wav"), str(library / "b.flac"), str(library / "live" / "c.wav"),
    ]  # fmt: skip
    _, out, _ = run(f"{library}/**/*.wav", "-r", "--json")
    assert [d["file"] for d in json_lines(out)] == [
        str(library / "a.wav"), str(library / "live" / "c.wav"),
    ]  # fmt: skip
    code, out, err = run(f"{library}/*.mp3", "--json")
    assert code == 5
    assert json_lines(out)[0]["code"] == "INVALID_ARGUMENT"
    assert "no file matches" in err


def test_json_lines_keep_input_order_with_failures_in_place(server, library, capsys, monkeypatch):
    inputs = [
        str(library / "live" / "c.wav"),  # the longest: finishes last with --jobs 4
        str(library / "missing.wav"),  # cannot be read here
        str(library / "notes.txt"),  # not audio: refused before sending
        str(library / "a.wav"),
        str(library / "empty"),  # neither a file nor a pattern
    ]
    address = ("--server", server.address, "--json")
    code, out, err = run_cli(capsys, monkeypatch, "classify", *inputs, *address, "--jobs", "4")
    assert code == 5, err  # the first failure's class
    documents = json_lines(out)
    assert [d["file"] for d in documents] == inputs
    assert [d.get("code") for d in documents] == [
        None, "INVALID_ARGUMENT", "INVALID_ARGUMENT", None, "INVALID_ARGUMENT",
    ]  # fmt: skip
    assert documents[0]["result"]["summary"]["window_count"] == 7
    assert all(d["error"] for d in documents if "code" in d)
    _, out, _ = run_cli(capsys, monkeypatch, "classify", inputs[3], "--model", "nope", *address)
    assert json_lines(out)[0]["code"] == "NOT_FOUND"


def test_mic_without_sounddevice_says_what_to_install(server, tmp_path, capsys, monkeypatch):
    # A sounddevice that fails to load, as it does where PortAudio is missing.
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    address = ("--server", server.address)
    code, _, err = run_cli(capsys, monkeypatch, "stream", "--mic", *address)
    assert code == 1
    assert "install mozart-client[microphone]" in err
    assert "PortAudio library not found" in err
    code, _, err = run_cli(capsys, monkeypatch, "stream", "--mic", "x.wav", *address)
    assert code == 5
    assert "a FILE, - for stdin, or --mic (one)" in err
