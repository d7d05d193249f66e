"""StreamClassify: windows in order, smoothing, WAV headers, the chunking invariant."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from mozart_server.audio.decode import resample
from mozart_server.audio.windowing import cut_windows, hop_samples
from mozart_server.engines import EngineFactory
from mozart_server.models.manifest import Manifest
from mozart_server.settings import EngineSettings
from tests.server.streams import audio_messages, config_message, run_stream
from tests.support.audio import encode, music_clip
from tests.support.server import InProcessServer, running_server

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


# The default model, whose engine is split at its log-mel output: streams and overlapping
# clips share mel frames between windows and only the body runs per window.
ROOT = Path(__file__).resolve().parents[2]
COMPOSER = ROOT / "models" / "composer-cnn" / "1"
CLIPS = sorted((ROOT / "demo" / "clips").glob("*.flac"))


@pytest.fixture(scope="module")
def composer_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("composer")
    shutil.copytree(
        COMPOSER, repository / "composer-cnn" / "1", ignore=shutil.ignore_patterns("optimize")
    )
    return repository


@pytest.fixture(scope="module")
def composer(composer_repository: Path) -> Iterator[InProcessServer]:
    with running_server(composer_repository) as running:
        yield running


@pytest.fixture(scope="module")
def composer_stub(composer: InProcessServer):
    with grpc.insecure_channel(composer.address) as channel:
        yield pb_grpc.AudioClassifierStub(channel)


@pytest.fixture(scope="module")
def full_graph(composer_repository: Path):
    """The full graph of the artifact the server chose (no split): the parity reference."""
    version = composer_repository / "composer-cnn" / "1"
    manifest = Manifest.model_validate_json((version / "model.json").read_text())
    chosen = EngineFactory(EngineSettings()).choose("composer-cnn", version, manifest.artifacts)
    return ort.InferenceSession(str(version / chosen.file), providers=["CPUExecutionProvider"])


def _full_graph_scores(session, data: bytes, rate: int, hop_ms: int) -> np.ndarray:
    pcm = (np.frombuffer(data, "<i2") / 32768).astype(np.float32)  # as the server decodes
    samples = resample(pcm, rate, 16_000)
    windows = cut_windows(samples, 48_000, hop_samples(hop_ms, 16_000))
    return np.asarray(session.run(["probabilities"], {"waveform": windows})[0])


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    clip=st.sampled_from(CLIPS),
    seconds=st.floats(2.0, 5.0),
    rate=st.sampled_from([16_000, 16_000, 22_050, 44_100]),
    # 250 ms is 12.5 STFT hops (the window's samples go); 3000 ms does not overlap.
    hop_ms=st.sampled_from([200, 250, 500, 1000, 1500, 3000]),
    # Odd sizes split samples across chunks; 1-byte chunks are the tiny model's test above.
    chunk_sizes=st.lists(st.integers(101, 24_000), min_size=1, max_size=6),
)
def test_incremental_frames_score_as_the_full_graph_on_real_clips(
    composer_stub, full_graph, clip, seconds, rate, hop_ms, chunk_sizes
) -> None:
    audio = soundfile.read(clip, dtype="float32")[0][: round(seconds * 16_000)]
    data = encode(resample(audio, 16_000, rate), rate, S16)
    expected = _full_graph_scores(full_graph, data, rate, hop_ms)
    messages = [config_message(S16, rate=rate, hop_ms=hop_ms, name="composer-cnn")]
    responses, error = run_stream(composer_stub, messages + audio_messages(data, chunk_sizes))
    assert error is None, error
    windows = [r.window for r in responses if r.WhichOneof("result") == "window"]
    assert [w.index for w in windows] == list(range(len(expected)))
    np.testing.assert_allclose([w.scores for w in windows], expected, atol=1e-4)
    request = pb.ClassifyRequest(
        model=pb.ModelRef(name="composer-cnn"),
        format=pb.AudioFormat(encoding=S16, sample_rate_hz=rate, channels=1),
        audio=data,
        hop_ms=hop_ms,
    )
    whole = composer_stub.Classify(request, timeout=30)
    np.testing.assert_allclose([w.scores for w in whole.windows], expected, atol=1e-4)
    assert [(w.index, w.start_ms, w.end_ms) for w in windows] == [
        (w.index, w.start_ms, w.end_ms) for w in whole.windows
    ]


def test_every_window_sent_is_one_latency_observation(composer, composer_stub) -> None:
    labels = {"model": "composer-cnn", "version": "1"}
    name = "mozart_stream_window_latency_seconds_count"
    before = composer.metric(name, **labels)
    data = encode(soundfile.read(CLIPS[0], dtype="float32")[0], 16_000, S16)
    messages = [config_message(S16, hop_ms=1000, name="composer-cnn")]
    responses, error = run_stream(composer_stub, messages + audio_messages(data, [3200]))
    assert error is None, error
    sent = sum(1 for r in responses if r.WhichOneof("result") == "window")
    assert sent == 4  # 6 s at a 1 s hop over 3 s windows
    assert composer.metric(name, **labels) - before == sent
    assert "mozart_stream_window_latency_seconds_bucket" in composer.scrape()
