"""One audio contract: Classify decodes every container of the shared list, in every WAV
sample format, never past the duration limit; truncated files and wild or non-finite float
samples are refused on every path; messages name no Python objects."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import soundfile

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from mozart_proto.v1.audio_formats import container_of
from mozart_server.audio.decode import (
    DECODE_BLOCK_FRAMES,
    AudioFormat,
    DecodeLimits,
    Encoding,
    decode_clip,
)
from mozart_server.errors import OutOfRangeError
from tests.server.streams import audio_messages, config_message, run_stream
from tests.support.audio import encode, music_clip
from tests.support.server import InProcessServer, running_server

INVALID, OUT_OF_RANGE = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE
F32, WAV, AUTO = pb.AUDIO_ENCODING_PCM_F32LE, pb.AUDIO_ENCODING_WAV, pb.AUDIO_ENCODING_AUTO
CLIP = music_clip(1.5, seed=21)


@pytest.fixture(scope="module")
def strict_server(model_repository: Path) -> Iterator[InProcessServer]:
    with running_server(model_repository, max_stream_duration_s=60.0) as server:
        yield server


@pytest.fixture(scope="module")
def stub(strict_server: InProcessServer) -> Iterator[pb_grpc.AudioClassifierStub]:
    with grpc.insecure_channel(strict_server.address) as channel:
        yield pb_grpc.AudioClassifierStub(channel)


def _encoded(samples: np.ndarray, rate: int, file_format: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=file_format, subtype=subtype)
    return buffer.getvalue()


def _wire_encoding(file_format: str) -> Any:
    container = container_of(file_format)
    assert container is not None
    return pb.AudioEncoding.Value(f"AUDIO_ENCODING_{container.wire_name}")


def _classify(stub, audio: bytes, encoding: Any, rate: int = 0) -> pb.ClassifyResponse:
    request = pb.ClassifyRequest(
        model=pb.ModelRef(name="tiny"),
        format=pb.AudioFormat(encoding=encoding, sample_rate_hz=rate, channels=1),
        audio=audio,
    )
    response: pb.ClassifyResponse = stub.Classify(request, timeout=60)
    return response


def _refusal(stub, audio: bytes, encoding: Any, rate: int = 0) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        _classify(stub, audio, encoding, rate)
    return caught.value


LOSSLESS = [
    ("WAV", "PCM_U8"), ("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "PCM_32"),
    ("WAV", "FLOAT"), ("WAV", "DOUBLE"), ("WAV", "ULAW"), ("WAV", "ALAW"),
    ("WAV", "IMA_ADPCM"), ("WAVEX", "PCM_24"), ("WAVEX", "FLOAT"), ("RF64", "PCM_16"),
    ("FLAC", "PCM_24"), ("AIFF", "PCM_16"), ("AIFF", "PCM_24"), ("AIFF", "FLOAT"),
]  # fmt: skip
LOSSY = [("OGG", "VORBIS"), ("OGG", "OPUS"), ("MP3", "MPEG_LAYER_III")]


@pytest.mark.parametrize(("file_format", "subtype"), LOSSLESS + LOSSY)
def test_classify_decodes_every_container_and_sample_format(stub, file_format, subtype) -> None:
    # Before: Classify ran the streaming WAV parser first, so 24/32-bit, U8, mu-law, A-law,
    # WAVEX and RF64 were "not supported in streams", and MP3 and AIFF had no encoding.
    reference = _classify(stub, encode(CLIP, 16_000, WAV), WAV)
    audio = _encoded(CLIP, 16_000, file_format, subtype)
    for encoding in (_wire_encoding(file_format), AUTO):
        response = _classify(stub, audio, encoding)
        scores = np.array(response.summary.scores)
        assert np.all(np.isfinite(scores))
        assert scores.sum() == pytest.approx(1.0, abs=1e-4)
        if (file_format, subtype) in LOSSLESS:
            assert response.summary.window_count == reference.summary.window_count
            tolerance = 0.05 if subtype in ("PCM_U8", "ULAW", "ALAW", "IMA_ADPCM") else 1e-3
            np.testing.assert_allclose(scores, reference.summary.scores, atol=tolerance)
        else:
            assert abs(response.summary.window_count - reference.summary.window_count) <= 2


def test_a_declared_container_must_match_the_audio(stub) -> None:
    error = _refusal(stub, _encoded(CLIP, 16_000, "WAV", "PCM_16"), pb.AUDIO_ENCODING_FLAC)
    assert error.code() == INVALID
    assert "format.encoding says FLAC but the audio is WAV" in str(error.details())


def test_formats_outside_the_list_are_refused_by_name(stub) -> None:
    au = _encoded(CLIP, 16_000, "AU", "PCM_16")  # libsndfile reads it; the contract does not
    error = _refusal(stub, au, AUTO)
    assert error.code() == INVALID
    assert "Classify does not take" in str(error.details())
    assert "WAV, FLAC, Ogg, MP3, AIFF" in str(error.details())
    error = _refusal(stub, au, WAV)
    assert error.code() == INVALID
    assert "says WAV but the audio is AU" in str(error.details())


GARBAGE = np.random.default_rng(5).integers(0, 256, 3000, dtype=np.uint8).tobytes()


@pytest.mark.parametrize(
    "encoding",
    [WAV, pb.AUDIO_ENCODING_FLAC, pb.AUDIO_ENCODING_OGG, pb.AUDIO_ENCODING_MP3,
     pb.AUDIO_ENCODING_AIFF, AUTO],
)  # fmt: skip
def test_decode_errors_are_plain_words(stub, encoding) -> None:
    # Before: "... cannot be decoded as FLAC: Error opening <_io.BytesIO object at 0x7f...>".
    for audio in (GARBAGE, b"fLaC" + GARBAGE, b"RIFF" + GARBAGE):
        error = _refusal(stub, audio, encoding)
        assert error.code() == INVALID, error.details()
        details = str(error.details())
        assert "0x" not in details
        assert "object at" not in details
        assert "cannot be decoded" in details or "says" in details


@pytest.mark.parametrize(
    ("file_format", "subtype"), [("WAV", "PCM_24"), ("WAVEX", "FLOAT"), ("RF64", "PCM_16"),
                                 ("AIFF", "PCM_16")],
)  # fmt: skip
def test_truncated_files_are_refused_whatever_their_sample_format(
    stub, file_format, subtype
) -> None:
    whole = _encoded(CLIP, 16_000, file_format, subtype)
    error = _refusal(stub, whole[: len(whole) * 2 // 3], _wire_encoding(file_format))
    assert error.code() == INVALID
    assert "header declares" in str(error.details())
    assert "truncated" in str(error.details())


# Bounded decode ------------------------------------------------------------------------

SILENCE_RATE_HZ = 8_000
SILENCE_S = 2 * 3600


@pytest.fixture(scope="module")
def two_hours_of_silence() -> bytes:
    """A FLAC of 2 hours of silence, about 180 KB; 230 MB once decoded to float32."""
    buffer = io.BytesIO()
    minute = np.zeros(SILENCE_RATE_HZ * 60, np.float32)
    with soundfile.SoundFile(buffer, "w", SILENCE_RATE_HZ, 1, format="FLAC") as sound:
        for _ in range(SILENCE_S // 60):
            sound.write(minute)
    return buffer.getvalue()


def test_a_flac_bomb_is_refused_out_of_range_through_the_server(
    model_repository: Path, two_hours_of_silence: bytes
) -> None:
    assert len(two_hours_of_silence) < 1_000_000
    with (
        running_server(model_repository) as server,  # the default limit: 3600 s
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        error = _refusal(stub, two_hours_of_silence, pb.AUDIO_ENCODING_FLAC)
        assert error.code() == OUT_OF_RANGE
        assert "max_stream_duration_s" in str(error.details())
        assert "7200.0 s" in str(error.details())
        assert server.metric("mozart_audio_processed_seconds_total") == 0


def test_a_flac_bomb_is_refused_from_its_header_before_decoding(
    two_hours_of_silence: bytes,
) -> None:
    # Before: the whole clip was decoded (float32, 230 MB here), then measured.
    decoded_bytes = SILENCE_S * SILENCE_RATE_HZ * 4
    tracemalloc.start()
    try:
        with pytest.raises(OutOfRangeError, match=r"its header says the clip lasts 7200\.0 s"):
            decode_clip(two_hours_of_silence, AudioFormat(Encoding.FLAC), DecodeLimits(3600.0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < decoded_bytes / 100


class _HeaderlessSoundFile(soundfile.SoundFile):  # type: ignore[misc]
    """A real SoundFile that reports no length, as libsndfile does for files whose header
    leaves it out, and counts the frames it decodes."""

    frames_decoded = 0

    @property
    def frames(self) -> int:
        return 2**63 - 1  # SF_COUNT_MAX: unknown

    def read(self, *args: Any, **kwargs: Any) -> Any:
        block = super().read(*args, **kwargs)
        type(self).frames_decoded += len(block)
        return block


def test_decoding_stops_at_the_limit_when_the_header_gives_no_length(
    monkeypatch: pytest.MonkeyPatch, two_hours_of_silence: bytes
) -> None:
    monkeypatch.setattr(soundfile, "SoundFile", _HeaderlessSoundFile)
    limit_s = 60.0
    with pytest.raises(OutOfRangeError, match="decoding stopped there"):
        decode_clip(two_hours_of_silence, AudioFormat(Encoding.FLAC), DecodeLimits(limit_s))
    limit_frames = int(limit_s * SILENCE_RATE_HZ)
    assert 0 < _HeaderlessSoundFile.frames_decoded <= limit_frames + DECODE_BLOCK_FRAMES


def test_a_long_raw_clip_is_refused_before_it_is_converted() -> None:
    audio = bytes(2 * 16_000 * 61)  # 61 s of s16le
    with pytest.raises(OutOfRangeError, match=r"61\.0 s"):
        decode_clip(audio, AudioFormat(Encoding.PCM_S16LE, 16_000, 1), DecodeLimits(60.0))


# Finite samples ------------------------------------------------------------------------


def _with_spike(value: float) -> np.ndarray:
    samples = np.zeros(16_000, np.float32)  # the finding: 16,000 zeros, one sample 1e20
    samples[8_000] = value
    return samples


def _float_wav(samples: np.ndarray) -> bytes:
    return _encoded(samples, 16_000, "WAV", "FLOAT")


@pytest.mark.parametrize("value", [1e20, -9.0, float("nan"), float("inf")])
def test_classify_refuses_wild_float_samples(stub, value: float) -> None:
    # Before: 1e20 was OK, with NaN scores from the test model and the default model alike.
    samples = _with_spike(value)
    cases = [
        (samples.astype("<f4").tobytes(), F32, 16_000),
        (_float_wav(samples), WAV, 0),
        (_encoded(samples, 16_000, "AIFF", "FLOAT"), AUTO, 0),
    ]
    for audio, encoding, rate in cases:
        error = _refusal(stub, audio, encoding, rate)
        assert error.code() == INVALID, error.details()
        assert "NaN or infinite" in str(error.details()) or "+-8" in str(error.details())


def _stream_error(stub, config: pb.StreamClassifyRequest, audio: bytes) -> grpc.RpcError | None:
    _, error = run_stream(stub, [config, *audio_messages(audio, [6400])])
    return error


@pytest.mark.parametrize("value", [1e20, float("nan")])
def test_streams_refuse_wild_float_samples(stub, value: float) -> None:
    samples = _with_spike(value)
    for config, audio in ((config_message(F32), samples.astype("<f4").tobytes()),
                          (config_message(WAV), _float_wav(samples))):  # fmt: skip
        error = _stream_error(stub, config, audio)
        assert error is not None
        assert error.code() == INVALID, error.details()
        assert "f32le audio" in str(error.details())


def test_headroom_above_full_scale_is_audio(stub) -> None:
    # Lossy decoders and float masters pass +-1 a little; that is not refused.
    response = _classify(stub, _with_spike(1.5).astype("<f4").tobytes(), F32, 16_000)
    assert np.all(np.isfinite(response.summary.scores))


def test_float_samples_clip_clips_instead_of_refusing(model_repository: Path) -> None:
    spike, nan = _with_spike(1e20).astype("<f4").tobytes(), _with_spike(float("nan"))
    with (
        running_server(model_repository, float_samples="clip") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        clipped = _classify(stub, spike, F32, 16_000)
        at_full_scale = _classify(stub, _with_spike(1.0).astype("<f4").tobytes(), F32, 16_000)
        assert np.all(np.isfinite(clipped.summary.scores))
        np.testing.assert_allclose(clipped.summary.scores, at_full_scale.summary.scores)
        from_wav = _classify(stub, _float_wav(_with_spike(-1e20)), WAV)
        assert np.all(np.isfinite(from_wav.summary.scores))
        responses, error = run_stream(stub, [config_message(F32), *audio_messages(spike, [6400])])
        assert error is None
        assert np.all(np.isfinite(responses[-1].summary.scores))
        error = _refusal(stub, nan.astype("<f4").tobytes(), F32, 16_000)
        assert error.code() == INVALID  # NaN cannot be clipped
