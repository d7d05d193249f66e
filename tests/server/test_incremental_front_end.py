"""The engine cut at its log-mel output: both halves, mixed batches, and the fallback."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from mozart_server.batching.batcher import BatcherConfig, DynamicBatcher
from mozart_server.engines.onnx import OnnxEngine
from mozart_server.engines.split import FrameGeometry, SplitError, span_frames, split_graph
from mozart_server.models.loader import frame_geometry
from mozart_server.models.manifest import Manifest
from mozart_server.observability.metrics import ServerMetrics
from mozart_server.settings import OnnxSettings
from tests.support.models import build_test_graph, build_test_model
from tests.support.server import running_server

ROOT = Path(__file__).resolve().parents[2]
COMPOSER = ROOT / "models" / "composer-cnn" / "1"
WINDOW = 48_000


def _real_windows(count: int) -> np.ndarray:
    clip = soundfile.read(ROOT / "demo" / "clips" / "mozart-k458-movement1.flac", dtype="float32")[
        0
    ]
    return np.stack([clip[start : start + WINDOW] for start in range(0, 8_000 * count, 8_000)])


@pytest.fixture(scope="module")
def engine() -> OnnxEngine:
    return OnnxEngine(COMPOSER / "model.onnx", OnnxSettings(instances=2))


@pytest.mark.parametrize("artifact", ["model.onnx", "model.int8.onnx"])
def test_the_default_models_halves_give_the_full_graphs_outputs(artifact: str) -> None:
    split = OnnxEngine(COMPOSER / artifact, OnnxSettings())
    assert split.split, split.split_note
    windows = _real_windows(3)
    features = split.features(windows)
    assert features.shape == (3, 1, 64, 149)
    full = ort.InferenceSession(str(COMPOSER / artifact), providers=["CPUExecutionProvider"])
    expected = full.run(["probabilities", "logits", "embedding"], {"waveform": windows})
    outputs = split.run_features(features)
    for got, want in zip(
        (outputs.probabilities, outputs.logits, outputs.embedding), expected, strict=True
    ):
        np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(split.run(windows).probabilities, expected[0], atol=1e-4)
    # A later run of samples, starting on a frame, gives the window's later frames.
    np.testing.assert_allclose(
        split.features(windows[:, 50 * 320 :]), features[..., 50:], atol=1e-5
    )


def test_a_graph_without_a_log_mel_front_end_is_not_split_and_the_load_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    graph = build_test_graph(
        window_samples=8_000,
        frame_samples=400,
        n_labels=4,
        embedding_dim=8,
        task="multiclass",
        seed=0,
    )
    for node in graph.graph.node:
        if node.op_type == "Log":
            node.op_type = "Abs"
    with pytest.raises(SplitError, match="no Log node"):
        split_graph(graph)
    # The test model has a Log, but its features are [batch, frames], not a mel image.
    version = build_test_model(tmp_path)
    tiny = OnnxEngine(version / "model.onnx", OnnxSettings())
    assert not tiny.split
    assert "not [batch, 1, n_mels, frames]" in tiny.split_note
    with pytest.raises(NotImplementedError):
        tiny.features(np.zeros((1, 8_000), np.float32))
    with (
        caplog.at_level(logging.INFO, logger="mozart_server.models.loader"),
        running_server(tmp_path),
    ):
        pass
    said = [r for r in caplog.records if r.getMessage().startswith("front end not split")]
    assert len(said) == 1
    assert (said[0].model, said[0].version) == ("tiny", "1")  # type: ignore[attr-defined]
    assert "not [batch, 1, n_mels, frames]" in said[0].front_end  # type: ignore[attr-defined]


def test_model_json_must_place_the_frames_where_the_engine_puts_them(engine: OnnxEngine) -> None:
    manifest = json.loads((COMPOSER / "model.json").read_text())
    geometry, note = frame_geometry(Manifest.model_validate(manifest), engine)
    assert geometry is not None, note
    assert (geometry.n_fft, geometry.hop_length, geometry.window_frames) == (512, 320, 149)
    assert 1 <= geometry.min_run_frames <= 149
    # Frames computed as streams and clips compute them are the window's own, bit for bit
    # (an INT8 body can move a score by 1e-2 for a change in a frame's last bit).
    clip = soundfile.read(ROOT / "demo" / "clips" / "bach-bwv284.flac", dtype="float32")[0]
    frames = span_frames(engine.features, geometry, clip)
    for start in (0, 5, 50, 75, 149):
        window = clip[np.newaxis, start * 320 : start * 320 + WINDOW]
        own = engine.features(window)
        assert np.array_equal(frames[..., start : start + 149], own)
        computed = max(50, geometry.min_run_frames)  # a 1 s hop's last frames
        offset = (149 - computed) * 320
        tail = engine.features(window[:, offset : offset + geometry.run_samples(computed)])
        assert np.array_equal(tail, own[..., 149 - computed :])
    wrong_hop = {**manifest, "front_end": {**manifest["front_end"], "hop_length": 160}}
    geometry, note = frame_geometry(Manifest.model_validate(wrong_hop), engine)
    assert geometry is None
    assert "149 frames per window" in note
    geometry, note = frame_geometry(Manifest.model_validate({**manifest, "front_end": {}}), engine)
    assert geometry is None
    assert "no positive n_fft and hop_length" in note


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(1, 5), st.booleans()), min_size=1, max_size=6))
def test_each_caller_gets_its_own_rows_whether_it_sent_frames_or_samples(
    engine: OnnxEngine, submissions: list[tuple[int, bool]]
) -> None:
    windows = _real_windows(5)
    features = engine.features(windows)
    expected = engine.run(windows).probabilities
    geometry = FrameGeometry(n_fft=512, hop_length=320, window_frames=149)
    config = BatcherConfig(
        max_batch_size=8, max_queue_delay_us=1_000, preferred_batch_sizes=(), max_queue_windows=64
    )

    async def scenario() -> list[np.ndarray]:
        batcher = DynamicBatcher(
            engine, config, ServerMetrics(CollectorRegistry()), "composer-cnn", "1", frames=geometry
        )
        batcher.start()
        try:
            results = await asyncio.gather(*(
                batcher.submit(windows[:rows], features=features[:rows] if mel else None)
                for rows, mel in submissions
            ))  # fmt: skip
        finally:
            await batcher.aclose()
        return [result.outputs.probabilities for result in results]

    for (rows, _), got in zip(submissions, asyncio.run(scenario()), strict=True):
        np.testing.assert_allclose(got, expected[:rows], atol=1e-5)


def test_one_batch_holds_rows_with_frames_and_rows_without(engine: OnnxEngine) -> None:
    windows = _real_windows(4)
    features = engine.features(windows)
    expected = engine.run(windows).probabilities
    geometry = FrameGeometry(n_fft=512, hop_length=320, window_frames=149)
    config = BatcherConfig(
        max_batch_size=4,
        max_queue_delay_us=2_000_000,
        preferred_batch_sizes=(),
        max_queue_windows=64,
    )

    async def scenario() -> list[np.ndarray]:
        batcher = DynamicBatcher(
            engine, config, ServerMetrics(CollectorRegistry()), "composer-cnn", "1", frames=geometry
        )
        batcher.start()
        try:
            results = await asyncio.gather(
                batcher.submit(windows[0:1]),
                batcher.submit(windows[1:3], features=features[1:3]),
                batcher.submit(windows[3:4]),
            )
        finally:
            await batcher.aclose()
        assert batcher.statistics.batches == 1  # one front-end run, one body run
        return [result.outputs.probabilities for result in results]

    got = asyncio.run(scenario())
    np.testing.assert_allclose(np.concatenate(got), expected, atol=1e-5)
