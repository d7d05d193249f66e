"""Drift scores through a real server: music like the training set's scores low, other audio high.

Each kind of audio goes to a fresh server on the real default model (composer-cnn/1),
through real Classify calls (FLAC or WAV bytes, decoded by the server), and the scores
are read from /metrics once the drift window holds every window sent. The in-distribution
audio is the committed demo clips (real renderings of TEST-split works of the default
corpus); the out-of-distribution audio is synthetic speech, white and pink noise, and the
demo clips low-passed at 300 Hz. Run with ``-s`` to see the scores (the promtool tests in
k8s/monitoring/mozart-rules.test.yml replay the scores of such a run).
"""

from __future__ import annotations

import io
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pytest
import soundfile
import yaml

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.support.audio import FloatArray, encode
from tests.support.server import InProcessServer, running_server

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "models" / "composer-cnn" / "1"
DEMO_CLIPS = sorted((ROOT / "demo" / "clips").glob("*.flac"))
RULES = ROOT / "k8s" / "monitoring" / "mozart-rules.yml"
RATE = 16_000
CLIP_S = 6.0
HOP_MS = 100
# 6 s clips, 3 s windows every 100 ms: 31 windows a clip, 155 for five clips.
WINDOWS_PER_CLIP = 31
WINDOWS = 5 * WINDOWS_PER_CLIP
MEL_EVERY = 3  # 52 sampled windows: fewer than the 64 that may wait, so none is skipped
MEL_WINDOWS = -(-WINDOWS // MEL_EVERY)
SCORES = ("mozart_drift_rms_psi", "mozart_drift_class_psi", "mozart_drift_mel_mean_shift")


def _demo_clips() -> list[FloatArray]:
    clips = [np.asarray(soundfile.read(path, dtype="float32")[0]) for path in DEMO_CLIPS]
    assert len(clips) == 5
    assert all(len(clip) == CLIP_S * RATE for clip in clips)
    return clips


def _low_pass(clip: FloatArray, cutoff_hz: float) -> FloatArray:
    spectrum = np.fft.rfft(clip)
    spectrum[np.fft.rfftfreq(len(clip), 1 / RATE) > cutoff_hz] = 0
    return np.fft.irfft(spectrum, n=len(clip)).astype(np.float32)


def _at_level(clip: npt.NDArray[Any], rms: float) -> FloatArray:
    scaled = clip * (rms / np.sqrt(np.mean(clip.astype(np.float64) ** 2)))
    return np.asarray(scaled, dtype=np.float32)


def _noise(seed: int, pink: bool) -> FloatArray:
    rng = np.random.default_rng(seed)
    samples = round(CLIP_S * RATE)
    white = rng.normal(size=samples)
    if not pink:
        return _at_level(white, 0.1)
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(samples)
    freqs[0] = freqs[1]
    return _at_level(np.fft.irfft(spectrum / np.sqrt(freqs), n=samples), 0.1)


def _speech_like(seed: int) -> FloatArray:
    """A voiced source near 120 Hz, three vowel formants, 4 Hz syllables and some pauses."""
    rng = np.random.default_rng(seed)
    samples = round(CLIP_S * RATE)
    t = np.arange(samples) / RATE
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t) + rng.normal(0, 2, samples).cumsum() / RATE
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    source = sum(np.sin(k * phase) / k for k in range(1, 40))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None) ** 2
    voiced = rng.random(int(CLIP_S * 2) + 1) > 0.25  # half-second phrases, some silent
    envelope *= voiced[(t * 2).astype(int)]
    freqs = np.fft.rfftfreq(samples, 1 / RATE)
    formants = sum(np.exp(-(((freqs - centre) / width) ** 2))
                   for centre, width in ((500, 120), (1500, 200), (2500, 300)))  # fmt: skip
    speech = np.fft.irfft(np.fft.rfft(source * envelope) * (formants + 0.02), n=samples)
    speech += 0.3 * np.std(speech) * rng.normal(size=samples) * (envelope > 0.5)  # fricatives
    return _at_level(speech, 0.1)


Clips = list[tuple[bytes, pb.AudioEncoding]]  # encoded audio and its AudioEncoding


def _wavs(clips: list[FloatArray]) -> Clips:
    return [(encode(clip, RATE, pb.AUDIO_ENCODING_WAV), pb.AUDIO_ENCODING_WAV) for clip in clips]


def _clips(kind: str) -> Clips:
    """Five 6 s clips of one kind of audio; only "music" is like the training data."""
    if kind == "music":  # sent as the committed FLAC files
        return [(path.read_bytes(), pb.AUDIO_ENCODING_FLAC) for path in DEMO_CLIPS]
    if kind == "speech":
        return _wavs([_speech_like(seed) for seed in range(5)])
    if kind in ("white noise", "pink noise"):
        return _wavs([_noise(seed, pink=kind == "pink noise") for seed in range(5)])
    assert kind == "music low-passed at 300 Hz"
    return _wavs([_low_pass(clip, 300.0) for clip in _demo_clips()])


KINDS = ("music", "speech", "white noise", "pink noise", "music low-passed at 300 Hz")
OUT_OF_DISTRIBUTION = KINDS[1:]
Scores = dict[str, float]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model's version 1 alone (whatever else models/ holds by now)."""
    root = tmp_path_factory.mktemp("drift-models")
    shutil.copytree(MODEL_DIR, root / "composer-cnn" / "1")
    return root


def _wait_for(server: InProcessServer, name: str, value: float) -> None:
    # The timer scores every 50 ms; this waits for the tick after the last window arrived.
    give_up = time.monotonic() + 60
    while server.metric(name, model="composer-cnn", version="1") != value:
        assert time.monotonic() < give_up, f"{name} never reached {value}: {server.scrape()}"
        time.sleep(0.05)


def _classify(stub: pb_grpc.AudioClassifierStub, audio: bytes, encoding: pb.AudioEncoding) -> int:
    response = stub.Classify(
        pb.ClassifyRequest(
            model=pb.ModelRef(name="composer-cnn"),
            format=pb.AudioFormat(encoding=encoding),
            audio=audio,
            hop_ms=HOP_MS,
        ),
        timeout=60,
    )
    return len(response.windows)


def _stream(stub: pb_grpc.AudioClassifierStub, audio: bytes, encoding: pb.AudioEncoding) -> int:
    """Streams a clip as 16 kHz PCM in 100 ms chunks; returns the windows scored."""
    samples = np.asarray(soundfile.read(io.BytesIO(audio), dtype="float32")[0])
    pcm = encode(samples, RATE, pb.AUDIO_ENCODING_PCM_S16LE)
    config = pb.StreamConfig(
        model=pb.ModelRef(name="composer-cnn"),
        format=pb.AudioFormat(
            encoding=pb.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=RATE, channels=1
        ),
        hop_ms=HOP_MS,
    )
    messages = [pb.StreamClassifyRequest(config=config)] + [
        pb.StreamClassifyRequest(audio=pcm[start : start + 3200])
        for start in range(0, len(pcm), 3200)
    ]
    responses = list(stub.StreamClassify(iter(messages), timeout=60))
    return sum(response.HasField("window") for response in responses)


def _scores_of(repository: Path, clips: Clips, send: Callable[..., int] = _classify) -> Scores:
    settings = {
        "drift_interval_s": 0.05,
        "drift_window_windows": WINDOWS,
        "drift_min_windows": WINDOWS,
        "drift_mel_every_windows": MEL_EVERY,
    }
    with (
        running_server(repository, **settings) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        assert server.metric("mozart_drift_windows") == 0  # nothing before min_windows
        for audio, encoding in clips:
            assert send(stub, audio, encoding) == WINDOWS_PER_CLIP
        _wait_for(server, "mozart_drift_windows", WINDOWS)
        _wait_for(server, "mozart_drift_mel_windows", MEL_WINDOWS)
        scores = {name: server.metric(name, model="composer-cnn", version="1") for name in SCORES}
        statistics = server.server.registry.resolve("composer-cnn").batcher.statistics
        scores["observer_cost_ratio"] = statistics.observe_s / statistics.compute_s
    return scores


@pytest.fixture(scope="module")
def scores(repository: Path) -> dict[str, Scores]:
    """Each kind's scores, printed (with -s) for the record."""
    measured = {kind: _scores_of(repository, _clips(kind)) for kind in KINDS}
    print("\ndrift scores over", WINDOWS, "windows (mel shift over", MEL_WINDOWS, "sampled):")
    for kind, values in measured.items():
        shown = "  ".join(f"{name.removeprefix('mozart_drift_')}={value:.4f}"
                          for name, value in values.items())  # fmt: skip
        print(f"  {kind:28s} {shown}")
    return measured


def _thresholds() -> dict[str, float]:
    """The drift alerts' thresholds, by the metric each compares: `metric > threshold`."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = next(group for group in groups if group["name"] == "mozart.drift")["rules"]
    found = {}
    for rule in rules:
        match = re.search(r"(mozart_drift_[a-z_]+)[^>]*>\s*([0-9.]+)", rule["expr"])
        assert match, rule["expr"]
        found[match.group(1)] = float(match.group(2))
    return found


def test_music_like_the_training_data_stays_below_every_drift_alert(scores) -> None:
    thresholds = _thresholds()
    assert set(thresholds) == set(SCORES)
    for name, threshold in thresholds.items():
        # A margin: in-distribution music scores at most 60% of each threshold.
        assert scores["music"][name] < 0.6 * threshold, (name, scores["music"])


@pytest.mark.parametrize("kind", OUT_OF_DISTRIBUTION)
def test_audio_unlike_the_training_data_crosses_the_input_and_prediction_alerts(
    scores, kind: str
) -> None:
    thresholds = _thresholds()
    music, other = scores["music"], scores[kind]
    for name in ("mozart_drift_mel_mean_shift", "mozart_drift_class_psi"):
        assert other[name] > 1.5 * thresholds[name], (name, other)
        assert other[name] > 3 * music[name], (name, music, other)


def test_a_version_without_reference_stats_serves_and_exports_no_drift(
    model_repository: Path,
) -> None:
    # The test model's model.json has `reference_stats: {}`.
    with running_server(model_repository, drift_interval_s=0.05, drift_min_windows=1) as server:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.AudioClassifierStub(channel)
            audio = io.BytesIO()
            soundfile.write(audio, np.zeros(RATE, dtype=np.float32), RATE, format="WAV")
            request = pb.ClassifyRequest(
                model=pb.ModelRef(name="tiny"),
                format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_WAV),
                audio=audio.getvalue(),
            )
            assert stub.Classify(request, timeout=30).windows
        assert server.metric("mozart_model_loaded", model="tiny", version="1") == 1
        assert "mozart_drift_windows{" not in server.scrape()


def test_an_unloaded_version_takes_its_drift_series_with_it(repository: Path) -> None:
    settings = {"drift_interval_s": 0.05, "drift_min_windows": WINDOWS_PER_CLIP,
                "model_control_mode": "explicit"}  # fmt: skip
    audio, encoding = _clips("music")[0]
    with (
        running_server(repository, **settings) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        stub.Classify(
            pb.ClassifyRequest(
                model=pb.ModelRef(name="composer-cnn"),
                format=pb.AudioFormat(encoding=encoding),
                audio=audio,
                hop_ms=HOP_MS,
            ),
            timeout=60,
        )
        _wait_for(server, "mozart_drift_windows", WINDOWS_PER_CLIP)
        stub.UnloadModel(pb.UnloadModelRequest(name="composer-cnn"), timeout=60)
        give_up = time.monotonic() + 60
        while "mozart_drift_windows{" in server.scrape():  # the batcher closes after the unload
            assert time.monotonic() < give_up, server.scrape()
            time.sleep(0.05)
        assert "mozart_drift_rms_psi{" not in server.scrape()


def test_streamed_music_scores_as_the_same_music_sent_as_clips(
    repository: Path, scores: dict[str, Scores]
) -> None:
    streamed = _scores_of(repository, _clips("music"), send=_stream)
    print("\n  music streamed as PCM", streamed)
    clips = scores["music"]
    # The same windows: the same RMS histogram and (scores equal within 1e-4) classes.
    assert streamed["mozart_drift_rms_psi"] == pytest.approx(clips["mozart_drift_rms_psi"])
    assert streamed["mozart_drift_class_psi"] == pytest.approx(clips["mozart_drift_class_psi"])
    # Streams' windows reach the batcher in smaller batches: the sampled third may differ.
    thresholds = _thresholds()
    name = "mozart_drift_mel_mean_shift"
    assert streamed[name] < 0.6 * thresholds[name], streamed
