"""Bad input gets its documented status and a message that says what was wrong; the server
keeps serving. Limits are small here so the cases run fast."""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.server.streams import audio_messages, config_message, run_stream
from tests.support.audio import encode, music_clip
from tests.support.server import InProcessServer, running_server

S16, WAV, FLAC = pb.AUDIO_ENCODING_PCM_S16LE, pb.AUDIO_ENCODING_WAV, pb.AUDIO_ENCODING_FLAC
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
CLIP = music_clip(1.0, seed=11)


@pytest.fixture(scope="module")
def strict_server(model_repository: Path) -> Iterator[InProcessServer]:
    with running_server(
        model_repository,
        max_stream_duration_s=3.0,
        max_chunk_bytes=64 * 1024,
        stream_idle_timeout_s=1.0,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def stub(strict_server: InProcessServer):
    with grpc.insecure_channel(strict_server.address) as channel:
        yield pb_grpc.AudioClassifierStub(channel)


def _wav_with_rate(rate: int) -> bytes:
    data = bytearray(encode(CLIP, 16_000, WAV))
    struct.pack_into("<I", data, 24, rate)
    return bytes(data)


def _lying_wav() -> bytes:
    data = bytearray(encode(CLIP, 16_000, WAV))
    struct.pack_into("<I", data, 40, 10 * len(data))  # the data chunk claims 10x its size
    return bytes(data)


def _truncated_flac() -> bytes:
    flac = encode(music_clip(3.0, seed=12), 16_000, FLAC)
    return flac[: len(flac) // 2]


RANDOM_BYTES = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()

CLASSIFY_CASES: dict[str, tuple[Any, ...]] = {
    "random bytes as WAV": (WAV, 0, RANDOM_BYTES, {}, INVALID, "not WAV"),
    "random bytes as FLAC": (FLAC, 0, RANDOM_BYTES, {}, INVALID, "cannot be decoded as FLAC"),
    "truncated FLAC": (FLAC, 0, _truncated_flac(), {}, INVALID, "cannot be decoded as FLAC"),
    "WAV header lying about its length": (WAV, 0, _lying_wav(), {}, INVALID, "declares"),
    "WAV header with rate 0": (WAV, 0, _wav_with_rate(0), {}, INVALID, "WAV"),
    "WAV header with rate 10^9": (WAV, 0, _wav_with_rate(10**9), {}, INVALID, "sample_rate_hz"),
    "raw PCM at 0 Hz": (S16, 0, encode(CLIP, 16_000, S16), {}, INVALID, "sample_rate_hz is 0"),
    "raw PCM at 10^9 Hz": (S16, 10**9, encode(CLIP, 16_000, S16), {}, INVALID, "sample_rate_hz"),
    "odd byte count of s16le": (S16, 16_000, b"\x00\x01\x02", {}, INVALID, "whole number"),
    "empty audio": (WAV, 0, b"", {}, INVALID, "empty"),
    "unspecified encoding": (0, 0, b"abc", {}, INVALID, "encoding"),
    "hop longer than the window": (WAV, 0, encode(CLIP, 16_000, WAV), {"hop_ms": 501}, INVALID,
                                   "hop_ms"),
    "top_k above the label count": (WAV, 0, encode(CLIP, 16_000, WAV), {"top_k": 5}, INVALID,
                                    "top_k"),
    "clip longer than the limit": (WAV, 0, encode(music_clip(4.0), 16_000, WAV), {},
                                   grpc.StatusCode.OUT_OF_RANGE, "max_stream_duration_s"),
    "unknown model": (WAV, 0, encode(CLIP, 16_000, WAV), {"model": pb.ModelRef(name="x")},
                      NOT_FOUND, "'x'"),
    "unknown version": (WAV, 0, encode(CLIP, 16_000, WAV),
                        {"model": pb.ModelRef(name="tiny", version="7")}, NOT_FOUND, "'7'"),
}  # fmt: skip


def assert_still_serving(stub) -> None:
    request = pb.ClassifyRequest(
        model=pb.ModelRef(name="tiny"),
        format=pb.AudioFormat(encoding=WAV),
        audio=encode(CLIP, 16_000, WAV),
    )
    assert stub.Classify(request, timeout=30).summary.window_count == 3


@pytest.mark.parametrize("case", list(CLASSIFY_CASES))
def test_classify_bad_input(stub, case: str) -> None:
    encoding, rate, audio, fields, code, needle = CLASSIFY_CASES[case]
    assert isinstance(fields, dict)
    request = pb.ClassifyRequest(
        format=pb.AudioFormat(encoding=encoding, sample_rate_hz=rate, channels=1),
        audio=audio,
    )
    request.model.name = "tiny"
    for key, value in fields.items():
        if key == "model":
            request.model.CopyFrom(value)
        else:
            setattr(request, key, value)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Classify(request, timeout=30)
    assert caught.value.code() == code, caught.value.details()
    assert needle in str(caught.value.details())
    assert_still_serving(stub)


AUDIO = audio_messages(encode(CLIP, 16_000, S16), [8000])
STREAM_CASES = {
    "empty stream": ([], INVALID, "before its StreamConfig"),
    "config and no audio": ([config_message()], INVALID, "no audio"),
    "config twice": ([config_message(), config_message(), *AUDIO], INVALID, "one StreamConfig"),
    "audio before config": ([*AUDIO, config_message()], INVALID, "first message"),
    "huge chunk": ([config_message(), pb.StreamClassifyRequest(audio=bytes(64 * 1024 + 2))],
                   INVALID, "max_chunk_bytes"),
    "FLAC in a stream": ([config_message(FLAC), *AUDIO], INVALID, "cannot be streamed"),
    "rate 0": ([config_message(rate=0), *AUDIO], INVALID, "sample_rate_hz is 0"),
    "rate 10^9": ([config_message(rate=10**9), *AUDIO], INVALID, "sample_rate_hz"),
    "random bytes as WAV": ([config_message(WAV), pb.StreamClassifyRequest(audio=RANDOM_BYTES)],
                            INVALID, "not WAV"),
    "half a sample at the end": ([config_message(), *AUDIO, pb.StreamClassifyRequest(audio=b"x")],
                                 INVALID, "partial audio frame"),
    "smoothing 1": ([config_message(smoothing=1.0), *AUDIO], INVALID, "smoothing"),
    "stream longer than the limit": (
        [config_message(), *audio_messages(encode(music_clip(4.0), 16_000, S16), [16000])],
        grpc.StatusCode.OUT_OF_RANGE, "max_stream_duration_s"),
    "unknown model": ([config_message(name="x"), *AUDIO], NOT_FOUND, "'x'"),
    "unknown version": ([config_message(version="7"), *AUDIO], NOT_FOUND, "'7'"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(STREAM_CASES))
def test_stream_bad_input(stub, case: str) -> None:
    messages, code, needle = STREAM_CASES[case]
    _, error = run_stream(stub, messages)
    assert error is not None
    assert error.code() == code, error.details()
    assert needle in str(error.details())
    assert_still_serving(stub)


def test_idle_stream_times_out(stub) -> None:
    def slow() -> Iterator[pb.StreamClassifyRequest]:
        yield config_message()
        yield AUDIO[0]
        time.sleep(2.5)  # longer than stream_idle_timeout_s=1

    with pytest.raises(grpc.RpcError) as caught:
        list(stub.StreamClassify(slow(), timeout=30))
    assert caught.value.code() == INVALID
    assert "stream_idle_timeout_s" in str(caught.value.details())


def test_wav_with_unsupported_sample_format_is_refused(stub) -> None:
    buffer = io.BytesIO()
    soundfile.write(buffer, CLIP, 16_000, format="WAV", subtype="PCM_24")
    _, error = run_stream(
        stub, [config_message(WAV), pb.StreamClassifyRequest(audio=buffer.getvalue())]
    )
    assert error is not None
    assert error.code() == INVALID
    assert "24 bits" in str(error.details())


_encodings = st.integers(0, 7)
_formats = st.builds(
    pb.AudioFormat,
    encoding=_encodings,
    sample_rate_hz=st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([8000, 16000, 44100])),
    channels=st.integers(0, 4),
)
_configs = st.builds(
    pb.StreamConfig,
    model=st.builds(pb.ModelRef, name=st.sampled_from(["tiny", "", "x"]),
                    version=st.sampled_from(["", "1", "2"])),
    format=_formats,
    hop_ms=st.integers(0, 2**32 - 1),
    top_k=st.integers(0, 10),
    smoothing=st.floats(width=32),
)  # fmt: skip
_bytes = st.one_of(
    st.binary(max_size=4096),
    st.sampled_from([RANDOM_BYTES, _lying_wav(), _truncated_flac(), encode(CLIP, 16_000, WAV)]),
)
_messages = st.one_of(
    st.builds(pb.StreamClassifyRequest, config=_configs),
    st.builds(pb.StreamClassifyRequest, audio=_bytes),
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(config=_configs, audio=_bytes)
def test_classify_never_crashes_on_arbitrary_input(stub, config, audio) -> None:
    request = pb.ClassifyRequest(model=config.model, format=config.format, audio=audio,
                                 hop_ms=config.hop_ms, top_k=config.top_k)  # fmt: skip
    error = None
    try:
        stub.Classify(request, timeout=30)
    except grpc.RpcError as raised:
        error = raised
    if error is not None:
        assert error.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), error
        assert error.details()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(messages=st.lists(_messages, max_size=5), lead_with_config=_configs)
def test_stream_never_crashes_on_arbitrary_input(stub, messages, lead_with_config) -> None:
    for sequence in (messages, [pb.StreamClassifyRequest(config=lead_with_config), *messages]):
        _, error = run_stream(stub, sequence)
        if error is not None:
            assert error.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), error
            assert error.details()


def test_server_still_serves_after_all_that(strict_server: InProcessServer, stub) -> None:
    assert_still_serving(stub)
    assert strict_server.metric("mozart_requests_total", code="INTERNAL") == 0
