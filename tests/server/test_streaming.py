"""StreamClassify: windows in order, smoothing, WAV headers, the chunking invariant."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.server.streams import audio_messages, config_message, run_stream
from tests.support.audio import encode, music_clip
from tests.support.server import InProcessServer

S16 = pb.AUDIO_ENCODING_PCM_S16LE


@pytest.fixture(scope="module")
def stub(server: InProcessServer):
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.AudioClassifierStub(channel)


def classify_whole(stub, data: bytes, rate: int, encoding: int, hop_ms: int):
    request = pb.ClassifyRequest(
        model=pb.ModelRef(name="tiny"),
        format=pb.AudioFormat(encoding=encoding, sample_rate_hz=rate, channels=1),  # type: ignore[arg-type]
        audio=data,
        hop_ms=hop_ms,
    )
    return stub.Classify(request, timeout=30)


def test_stream_sends_windows_in_order_then_a_final_summary(stub) -> None:
    data = encode(music_clip(2.0, seed=1), 16_000, S16)
    responses, error = run_stream(stub, [config_message(hop_ms=500), *audio_messages(data, [3000])])
    assert error is None
    windows = [r.window for r in responses if r.WhichOneof("result") == "window"]
    assert [w.index for w in windows] == [0, 1, 2, 3]
    assert [w.start_ms for w in windows] == [0, 500, 1000, 1500]
    assert not any(r.is_final for r in responses[:-1])
    final = responses[-1]
    assert final.is_final
    assert final.summary.window_count == 4
    assert final.summary.audio_duration_ms == 2000
    np.testing.assert_allclose(
        final.summary.scores, np.mean([w.scores for w in windows], axis=0), rtol=1e-5
    )
    assert len({r.request_id for r in responses}) == 1


def test_smoothing_is_an_exponential_moving_average(stub) -> None:
    data = encode(music_clip(3.0, seed=2), 16_000, S16)
    responses, error = run_stream(
        stub, [config_message(hop_ms=250, smoothing=0.75), *audio_messages(data, [4000])]
    )
    assert error is None
    windows = [r.window for r in responses if r.WhichOneof("result") == "window"]
    expected = np.array(windows[0].scores)
    np.testing.assert_allclose(windows[0].smoothed_scores, expected, rtol=1e-6)
    for window in windows[1:]:
        expected = 0.75 * expected + 0.25 * np.array(window.scores)
        np.testing.assert_allclose(window.smoothed_scores, expected, rtol=1e-4)


def test_wav_stream_header_split_across_chunks(stub) -> None:
    clip = music_clip(1.5, 22_050, seed=3)
    wav = encode(clip, 22_050, pb.AUDIO_ENCODING_WAV)
    whole = classify_whole(stub, wav, 0, pb.AUDIO_ENCODING_WAV, 250)
    messages = [config_message(pb.AUDIO_ENCODING_WAV, rate=0, channels=0, hop_ms=250)]
    responses, error = run_stream(stub, messages + audio_messages(wav, [5, 7, 30, 1000]))
    assert error is None
    windows = [r.window for r in responses if r.WhichOneof("result") == "window"]
    assert len(windows) == len(whole.windows)
    np.testing.assert_allclose(
        [w.scores for w in windows], [w.scores for w in whole.windows], atol=1e-4
    )


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seconds=st.floats(0.3, 1.6),
    rate=st.sampled_from([8_000, 16_000, 22_050, 44_100]),
    hop_ms=st.sampled_from([100, 250, 400, 500]),
    chunk_sizes=st.lists(st.integers(1, 6000), min_size=1, max_size=6),
    seed=st.integers(0, 1000),
)
def test_any_chunking_gives_the_windows_and_scores_of_classify(
    stub, seconds, rate, hop_ms, chunk_sizes, seed
) -> None:
    data = encode(music_clip(seconds, rate, seed=seed), rate, S16)
    whole = classify_whole(stub, data, rate, S16, hop_ms)
    messages = [config_message(S16, rate=rate, hop_ms=hop_ms)]
    responses, error = run_stream(stub, messages + audio_messages(data, chunk_sizes))
    assert error is None, error
    windows = [r.window for r in responses if r.WhichOneof("result") == "window"]
    assert [(w.index, w.start_ms, w.end_ms) for w in windows] == [
        (w.index, w.start_ms, w.end_ms) for w in whole.windows
    ]
    np.testing.assert_allclose(
        [w.scores for w in windows], [w.scores for w in whole.windows], atol=1e-4
    )
    np.testing.assert_allclose(responses[-1].summary.scores, whole.summary.scores, atol=1e-4)
