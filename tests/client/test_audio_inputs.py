"""The SDK turns paths, bytes, arrays and chunk iterators into the right wire audio."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile

from mozart_client._streaming import Pacer, SendLog
from mozart_client.audio import clip_audio, stream_audio
from mozart_client.errors import InvalidInputError
from mozart_proto.v1 import audio_classifier_pb2 as pb

RATE = 22_050


def _tone(seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("file_format", "subtype", "encoding"),
    [
        ("WAV", "PCM_16", pb.AUDIO_ENCODING_WAV),
        ("FLAC", "PCM_16", pb.AUDIO_ENCODING_FLAC),
        ("OGG", "VORBIS", pb.AUDIO_ENCODING_OGG),
    ],
)
def test_containers_are_sent_as_they_are(tmp_path: Path, file_format, subtype, encoding) -> None:
    path = tmp_path / f"clip.{file_format.lower()}"
    soundfile.write(path, _tone(0.5), RATE, format=file_format, subtype=subtype)
    wire = clip_audio(path)
    assert wire.format.encoding == encoding
    assert wire.data == path.read_bytes()
    assert clip_audio(path.read_bytes()).format.encoding == encoding


def test_int16_stereo_array_becomes_s16le() -> None:
    samples = (np.arange(20, dtype=np.int16) - 10).reshape(10, 2)
    wire = clip_audio(samples, sample_rate_hz=16_000)
    assert wire.format.encoding == pb.AUDIO_ENCODING_PCM_S16LE
    assert (wire.format.sample_rate_hz, wire.format.channels) == (16_000, 2)
    assert np.array_equal(np.frombuffer(wire.data, "<i2").reshape(10, 2), samples)


def test_float64_array_becomes_f32le() -> None:
    samples = np.linspace(-1, 1, 101)
    wire = clip_audio(samples, sample_rate_hz=8_000)
    assert wire.format.encoding == pb.AUDIO_ENCODING_PCM_F32LE
    assert wire.format.channels == 1
    np.testing.assert_allclose(np.frombuffer(wire.data, "<f4"), samples, rtol=1e-6)


@pytest.mark.parametrize(
    ("audio", "kwargs", "message"),
    [
        (np.zeros(10, np.float32), {}, "sample_rate_hz"),
        (np.zeros((2, 2, 2), np.float32), {"sample_rate_hz": 8000}, "shape"),
        (np.zeros(10, np.int64), {"sample_rate_hz": 8000}, "int16 or float"),
        (b"\x01\x02\x03 not audio at all", {}, "encoding"),
        (b"\x00\x00", {"encoding": "pcm_s16le"}, "sample_rate_hz"),
        (b"\x00\x00", {"encoding": "aac"}, "unknown encoding"),
        ("/no/such/file.wav", {}, "cannot read"),
    ],
)
def test_bad_clip_input_is_refused_before_sending(audio, kwargs, message) -> None:
    with pytest.raises(InvalidInputError, match=message) as caught:
        clip_audio(audio, **kwargs)
    assert caught.value.code is None


def test_wav_file_streams_as_s16le_chunks_of_chunk_ms(tmp_path: Path) -> None:
    path = tmp_path / "clip.wav"
    samples = (_tone(1.05) * 32767).astype(np.int16)
    soundfile.write(path, samples, RATE, subtype="PCM_16")
    audio = stream_audio(path, chunk_ms=100)
    chunks = list(audio.chunks)
    assert audio.format.encoding == pb.AUDIO_ENCODING_PCM_S16LE
    assert (audio.format.sample_rate_hz, audio.format.channels) == (RATE, 1)
    assert len(chunks) == 11  # ten full chunks of 100 ms and one of 50 ms
    assert chunks[0].duration_s == pytest.approx(0.1, abs=1e-4)
    assert sum(c.duration_s for c in chunks) == pytest.approx(1.05, abs=1e-4)
    with wave.open(str(path)) as reader:
        assert b"".join(c.data for c in chunks) == reader.readframes(reader.getnframes())


def test_flac_file_streams_as_decoded_f32le(tmp_path: Path) -> None:
    path = tmp_path / "clip.flac"
    soundfile.write(path, _tone(0.7), RATE, subtype="PCM_16")
    audio = stream_audio(path, chunk_ms=250)
    data = b"".join(c.data for c in audio.chunks)
    assert audio.format.encoding == pb.AUDIO_ENCODING_PCM_F32LE
    expected, _ = soundfile.read(path, dtype="float32")
    np.testing.assert_array_equal(np.frombuffer(data, "<f4"), expected)


def test_corrupt_file_is_refused_before_the_stream_opens(tmp_path: Path) -> None:
    path = tmp_path / "broken.flac"
    path.write_bytes(b"fLaC" + bytes(100))
    with pytest.raises(InvalidInputError, match="cannot decode"):
        stream_audio(path)
    with pytest.raises(InvalidInputError, match="cannot read"):
        stream_audio(tmp_path / "missing.wav")


def test_byte_chunks_need_a_format_and_get_durations() -> None:
    with pytest.raises(InvalidInputError, match="encoding"):
        stream_audio(iter([b"\x00\x00"]))
    audio = stream_audio(
        iter([bytes(3200), bytes(1600)]), encoding="pcm_s16le", sample_rate_hz=16_000
    )
    assert [c.duration_s for c in audio.chunks] == [0.1, 0.05]


def test_numpy_chunks_keep_their_dtype() -> None:
    chunks = [np.zeros(160, np.int16), np.ones(160, np.int16)]
    audio = stream_audio(iter(chunks), sample_rate_hz=16_000)
    assert audio.format.encoding == pb.AUDIO_ENCODING_PCM_S16LE
    assert [np.frombuffer(c.data, "<i2")[0] for c in audio.chunks] == [0, 1]


def test_pacer_holds_chunks_until_their_audio_would_be_recorded() -> None:
    paced, unpaced = Pacer(realtime=True), Pacer(realtime=False)
    # Each chunk waits for the end of its own audio, counted from the first chunk.
    assert 0.0 < paced.delay_s(0.1) <= 0.1 + 1e-6
    assert 0.1 < paced.delay_s(0.1) <= 0.2 + 1e-6
    assert unpaced.delay_s(0.1) == 0.0


def test_send_log_times_a_window_from_the_chunk_that_completed_it() -> None:
    log = SendLog()
    for index in range(5):  # 100 ms chunks sent at t = 10.0, 10.1, ...
        log.record(0.1, 10.0 + index / 10)
    assert log.latency_ms(300, received_at=10.25) == pytest.approx(50.0)
    assert log.latency_ms(250, received_at=10.25) == pytest.approx(50.0)
    assert log.latency_ms(600, received_at=11.0) is None
