"""The drift statistics on their own: the numpy log-mel is the trainer's, the live statistics
reproduce model.json's reference on the reference's own audio, and the sliding window and
sampling do not depend on how windows were batched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import given, settings
from hypothesis import strategies as st

from mozart_server.observability.drift import (
    DriftConfig,
    DriftMonitor,
    FrontEnd,
    LogMel,
    ReferenceStats,
    mel_filterbank,
    population_stability_index,
)
from tests.support.corpus import default_corpus

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "models" / "composer-cnn" / "1"
MANIFEST = json.loads((MODEL_DIR / "model.json").read_text())
LABELS = tuple(MANIFEST["labels"])
_REFERENCE = ReferenceStats.from_manifest(MANIFEST["reference_stats"], LABELS)
assert _REFERENCE is not None
REFERENCE = _REFERENCE
FRONT_END = FrontEnd.from_manifest(MANIFEST["front_end"], MANIFEST["sample_rate_hz"])
WINDOW = MANIFEST["window_samples"]


def _demo_windows() -> np.ndarray:
    clip = soundfile.read(ROOT / "demo" / "clips" / "bach-bwv284.flac", dtype="float32")[0]
    return np.stack([clip[start : start + WINDOW] for start in (0, 24_000, 48_000)])


def test_the_numpy_log_mel_is_the_trainers_front_end() -> None:
    torch = pytest.importorskip("torch")
    frontend = pytest.importorskip("mozart_trainer.frontend")
    fields = {key: value for key, value in MANIFEST["front_end"].items() if key != "center"}
    config = frontend.FrontEndConfig(**fields)
    assert np.array_equal(frontend.mel_filterbank(config), mel_filterbank(FRONT_END))
    windows = _demo_windows()
    with torch.no_grad():
        expected = frontend.LogMelFrontEnd(config)(torch.from_numpy(windows)).squeeze(1).numpy()
    # The trainer's graph computes in float32, the server's copy in float64.
    np.testing.assert_allclose(LogMel(FRONT_END)(windows), expected, atol=1e-4)


@pytest.mark.slow
def test_the_validation_split_reproduces_the_reference() -> None:
    corpus = default_corpus()  # as `make train` builds it (reused when it is there)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(MODEL_DIR / "model.onnx"))
    windows = []
    for path in sorted((corpus / "val").glob("*/*.flac")):  # the trainer's order and hop
        audio = soundfile.read(path, dtype="float32")[0]
        windows += [audio[start : start + WINDOW]
                    for start in range(0, len(audio) - WINDOW + 1, 24_000)]  # fmt: skip
    windows_array = np.stack(windows)
    monitor = DriftMonitor(REFERENCE, FRONT_END, DriftConfig(len(windows), 1, 1), {})
    for start in range(0, len(windows_array), 16):  # a batch at a time, scored as it goes
        batch = windows_array[start : start + 16]
        monitor.observe(batch, session.run(["probabilities"], {"waveform": batch})[0])
        monitor.evaluate()
    scores = monitor.evaluate()
    assert scores is not None
    assert scores.windows == REFERENCE.windows
    assert scores.rms_psi < 1e-9
    assert scores.class_psi < 1e-9
    assert scores.mel_mean_shift is not None
    assert scores.mel_mean_shift < 1e-4


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift() -> None:
    reference = np.array([10.0, 50.0, 30.0, 10.0])
    assert population_stability_index(reference.copy(), reference) == 0.0
    # Smoothing by half a count per bin weighs less as the counts grow.
    assert population_stability_index(reference * 3, reference) < 1e-3
    near = population_stability_index(np.array([12.0, 48.0, 30.0, 10.0]), reference)
    far = population_stability_index(np.array([50.0, 10.0, 10.0, 30.0]), reference)
    unseen = population_stability_index(np.array([0.0, 0.0, 0.0, 100.0]), reference)
    assert 0 < near < far < unseen < np.inf


def test_a_manifest_without_reference_stats_has_no_reference() -> None:
    assert ReferenceStats.from_manifest({}, LABELS) is None
    with pytest.raises(ValueError, match="rms_histogram"):
        ReferenceStats.from_manifest({"mel_mean": [0.0]}, LABELS)


def _one_hot(classes: np.ndarray) -> np.ndarray:
    return np.asarray(np.eye(len(LABELS), dtype=np.float32)[classes % len(LABELS)])


def _fed(
    batches: list[int], windows: np.ndarray, config: DriftConfig, classes: np.ndarray | None = None
) -> DriftMonitor:
    monitor = DriftMonitor(REFERENCE, FRONT_END, config, {})
    probabilities = _one_hot(np.arange(len(windows)) if classes is None else classes)
    start = 0
    for size in batches:
        monitor.observe(windows[start : start + size], probabilities[start : start + size])
        start += size
    return monitor


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 17), min_size=1, max_size=12))
def test_the_scores_do_not_depend_on_how_windows_were_batched(batches: list[int]) -> None:
    rng = np.random.default_rng(len(batches))
    total = sum(batches)
    # Windows at different loudness, shorter than the model's (the statistics do not care).
    windows = (rng.normal(size=(total, 1600)) * rng.uniform(0.001, 0.5, (total, 1))).astype(
        np.float32
    )
    classes = rng.integers(0, 3, total)
    config = DriftConfig(window_windows=20, min_windows=1, mel_every_windows=3)
    batched = _fed(batches, windows, config, classes).evaluate()
    whole = _fed([total], windows, config, classes).evaluate()
    # Only the last 20 windows count; every third window of the whole stream is sampled.
    last = _fed([min(total, 20)], windows[-20:], config, classes[-20:]).evaluate()
    assert batched is not None
    assert whole is not None
    assert last is not None
    assert batched == whole
    assert batched.windows == min(total, 20)
    assert batched.rms_psi == pytest.approx(last.rms_psi)
    assert batched.class_psi == pytest.approx(last.class_psi)
    assert batched.mel_windows == min(-(-total // 3), 7)  # the ring holds ceil(20 / 3)


def test_no_scores_before_min_windows() -> None:
    config = DriftConfig(window_windows=100, min_windows=10, mel_every_windows=1)
    windows = np.full((9, 1600), 0.1, dtype=np.float32)
    monitor = _fed([9], windows, config)
    assert monitor.evaluate() is None
    monitor.observe(windows[:1], _one_hot(np.zeros(1, dtype=np.int64)))
    assert monitor.evaluate() is not None


def test_the_graphs_own_frames_give_the_mel_statistics_of_the_numpy_copy() -> None:
    from mozart_server.engines.onnx import OnnxEngine  # noqa: PLC0415
    from mozart_server.settings import OnnxSettings  # noqa: PLC0415

    engine = OnnxEngine(MODEL_DIR / "model.onnx", OnnxSettings())
    assert engine.split, engine.split_note
    windows = _demo_windows()
    features = engine.features(windows)
    probabilities = _one_hot(np.arange(len(windows)))
    config = DriftConfig(window_windows=10, min_windows=1, mel_every_windows=1)
    from_samples = DriftMonitor(REFERENCE, FRONT_END, config, {})
    from_samples.observe(windows, probabilities)
    from_frames = DriftMonitor(REFERENCE, FRONT_END, config, {})
    from_frames.observe(windows, probabilities, features)
    # Frames of the wrong shape are not trusted: the monitor computes its own.
    wrong = DriftMonitor(REFERENCE, FRONT_END, config, {})
    wrong.observe(windows, probabilities, features[:, :, :10])
    expected, got, fallback = from_samples.evaluate(), from_frames.evaluate(), wrong.evaluate()
    assert expected is not None
    assert got is not None
    assert fallback is not None
    assert got.mel_windows == expected.mel_windows == len(windows)
    assert got.mel_mean_shift == pytest.approx(expected.mel_mean_shift, abs=1e-4)
    assert fallback == expected
    assert (got.rms_psi, got.class_psi) == (expected.rms_psi, expected.class_psi)
