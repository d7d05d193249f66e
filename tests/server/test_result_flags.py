"""Silent and low-confidence windows: model.json's result_thresholds, over every transport.

A real server on a test model whose model.json carries thresholds, a clip that is music
then digital silence then near-silence, sent by gRPC Classify, StreamClassify, REST and
WebSocket: each must flag the same windows and leave silent ones out of the summary.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from mozart_server.audio.windowing import cut_windows
from mozart_server.inference.flags import window_level_dbfs, window_levels_dbfs
from mozart_server.models.manifest import Manifest
from tests.server.streams import audio_messages, config_message, run_stream
from tests.support.audio import encode, music_clip
from tests.support.models import build_test_model
from tests.support.server import InProcessServer, running_server

RATE = 16_000
WINDOW = 8_000  # the test model's 0.5 s window
SILENCE_DBFS = -60.0
MIN_TOP_SCORE = 0.3  # the tiny model's four-way scores straddle it
F32 = pb.AudioFormat(encoding=pb.AUDIO_ENCODING_PCM_F32LE, sample_rate_hz=RATE, channels=1)


def _clip() -> np.ndarray:
    """1 s of music, 1 s of digital zeros, 1 s of noise at about -80 dBFS."""
    rng = np.random.default_rng(3)
    whisper = rng.normal(0.0, 1e-4, RATE).astype(np.float32)
    return np.concatenate([music_clip(1.0, RATE, seed=4), np.zeros(RATE, np.float32), whisper])


@pytest.fixture(scope="module")
def flagged_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    repository = tmp_path_factory.mktemp("flagged")
    version_dir = build_test_model(repository)
    build_test_model(repository, name="plain")  # model.json without thresholds
    manifest_path = version_dir / "model.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["result_thresholds"] = {
        "silence": {"rms_dbfs": SILENCE_DBFS, "method": "a test value"},
        "low_confidence": {"min_top_score": MIN_TOP_SCORE, "method": "a test value"},
    }
    manifest_path.write_text(json.dumps(manifest))
    with running_server(repository) as server:
        yield server


@pytest.fixture(scope="module")
def stub(flagged_server: InProcessServer) -> Iterator[pb_grpc.AudioClassifierStub]:
    with grpc.insecure_channel(flagged_server.address) as channel:
        yield pb_grpc.AudioClassifierStub(channel)


def _classify(stub: pb_grpc.AudioClassifierStub, name: str = "tiny") -> pb.ClassifyResponse:
    request = pb.ClassifyRequest(
        model=pb.ModelRef(name=name),
        format=F32,
        audio=encode(_clip(), RATE, pb.AUDIO_ENCODING_PCM_F32LE),
        hop_ms=500,
    )
    response: pb.ClassifyResponse = stub.Classify(request, timeout=30)
    return response


@pytest.mark.parametrize(("length", "hop"), [(48_000, 8_000), (30_001, 1_234), (5_000, 4_000)])
def test_clip_levels_are_the_levels_of_the_windows_cut(length: int, hop: int) -> None:
    samples = music_clip(length / RATE, RATE, seed=length)
    windows = cut_windows(samples, WINDOW, hop)
    levels = window_levels_dbfs(samples, WINDOW, hop, len(windows))
    np.testing.assert_allclose(levels, [window_level_dbfs(w) for w in windows], atol=1e-3)
    assert window_level_dbfs(np.zeros(WINDOW, np.float32)) == pytest.approx(-200.0)


def test_silence_and_near_silence_are_flagged_and_left_out_of_the_summary(stub) -> None:
    response = _classify(stub)
    windows = response.windows
    assert len(windows) == 6  # 3 s, 0.5 s windows and hop
    assert [w.silent for w in windows] == [False, False, True, True, True, True]
    assert windows[2].rms_dbfs == pytest.approx(-200.0)
    assert -85.0 < windows[5].rms_dbfs < -75.0
    assert windows[0].rms_dbfs > SILENCE_DBFS
    for window in windows:
        top = max(window.scores)
        assert window.low_confidence == (not window.silent and top < MIN_TOP_SCORE)
    summary = response.summary
    assert (summary.window_count, summary.silent_window_count) == (6, 4)
    assert summary.low_confidence_window_count == sum(w.low_confidence for w in windows)
    heard = np.array([w.scores for w in windows[:2]])
    np.testing.assert_allclose(summary.scores, heard.mean(axis=0), rtol=1e-5)


def test_an_all_silent_clip_has_no_summary_label(stub) -> None:
    request = pb.ClassifyRequest(
        model=pb.ModelRef(name="tiny"),
        format=F32,
        audio=np.zeros(5 * RATE, np.float32).tobytes(),
    )
    summary = stub.Classify(request, timeout=30).summary
    assert summary.window_count == summary.silent_window_count > 0
    assert list(summary.top_k) == []
    assert list(summary.scores) == [0.0] * 4


def test_a_model_json_without_thresholds_flags_nothing(stub) -> None:
    response = _classify(stub, name="plain")
    assert not any(w.silent or w.low_confidence for w in response.windows)
    assert response.windows[2].rms_dbfs == pytest.approx(-200.0)  # the level is still sent
    assert response.summary.silent_window_count == 0
    assert response.summary.top_k


def test_streams_flag_the_same_windows_as_classify(stub) -> None:
    whole = _classify(stub)
    data = encode(_clip(), RATE, pb.AUDIO_ENCODING_PCM_F32LE)
    messages = [config_message(encoding=pb.AUDIO_ENCODING_PCM_F32LE, hop_ms=500)]
    responses, error = run_stream(stub, messages + audio_messages(data, [3_000]))
    assert error is None
    windows = [r.window for r in responses if r.HasField("window")]
    summary = next(r.summary for r in responses if r.HasField("summary"))
    assert [(w.silent, w.low_confidence) for w in windows] == [
        (w.silent, w.low_confidence) for w in whole.windows
    ]
    np.testing.assert_allclose(
        [w.rms_dbfs for w in windows], [w.rms_dbfs for w in whole.windows], atol=0.01
    )
    assert summary.silent_window_count == whole.summary.silent_window_count
    np.testing.assert_allclose(summary.scores, whole.summary.scores, atol=1e-5)


def test_rest_and_websocket_json_carry_the_flags(flagged_server: InProcessServer) -> None:
    data = encode(_clip(), RATE, pb.AUDIO_ENCODING_PCM_F32LE)
    params: dict[str, str | int] = {
        "encoding": "pcm_f32le",
        "sample_rate_hz": RATE,
        "channels": 1,
        "hop_ms": 500,
    }
    with httpx.Client(base_url=flagged_server.http_url, timeout=30) as client:
        body = client.post("/v1/models/tiny/classify", content=data, params=params).json()
    assert [w["silent"] for w in body["windows"]] == [False, False, True, True, True, True]
    assert body["windows"][2]["rms_dbfs"] == pytest.approx(-200.0)
    assert body["summary"]["silent_window_count"] == 4
    url = f"ws://127.0.0.1:{flagged_server.http_port}/v1/models/tiny/stream"
    config = {"format": {"encoding": "pcm_f32le", "sample_rate_hz": RATE, "channels": 1},
              "hop_ms": 500}  # fmt: skip
    with connect(url) as ws:
        ws.send(json.dumps(config))
        ws.recv(timeout=30)  # ready
        ws.send(data)
        ws.send(json.dumps({"type": "end"}))
        messages: list[dict[str, Any]] = []
        while not messages or messages[-1]["type"] != "summary":
            messages.append(json.loads(ws.recv(timeout=30)))
    windows = [m for m in messages if m["type"] == "window"]
    assert [w["silent"] for w in windows] == [False, False, True, True, True, True]
    assert [w["low_confidence"] for w in windows] == [w["low_confidence"] for w in body["windows"]]
    assert messages[-1]["silent_windows"] == 4
    assert messages[-1]["low_confidence_windows"] == body["summary"]["low_confidence_window_count"]


def test_thresholds_are_validated(tmp_path: Path) -> None:
    base = json.loads((build_test_model(tmp_path) / "model.json").read_text())
    base["result_thresholds"] = {"silence": {"rms_dbfs": 6.0}}
    with pytest.raises(ValueError, match="rms_dbfs"):
        Manifest.model_validate(base)
