"""WebSocket streaming (docs/http.md) of a real music clip, and its errors as close codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.server import InProcessServer, running_server

CLIP = Path(__file__).parents[2] / "demo" / "clips" / "bach-bwv284.flac"  # 6 s at 16 kHz
CONFIG = {"format": {"encoding": "pcm_s16le", "sample_rate_hz": 16_000, "channels": 1},
          "hop_ms": 250, "top_k": 2, "smoothing": 0.5}  # fmt: skip


def _url(server: InProcessServer, model: str = "tiny") -> str:
    return f"ws://127.0.0.1:{server.http_port}/v1/models/{model}/stream"


def _pcm() -> bytes:
    samples, rate = soundfile.read(CLIP, dtype="int16")
    assert rate == 16_000
    return bytes(np.asarray(samples, dtype="<i2").tobytes())


def _until_closed(ws: ClientConnection) -> tuple[list[dict[str, Any]], int, str]:
    messages = []
    try:
        while True:
            messages.append(json.loads(ws.recv(timeout=30)))
    except ConnectionClosed as closed:
        frame = closed.rcvd  # None: closed without a close frame (1006)
        return messages, frame.code if frame else 1006, frame.reason if frame else ""


def test_a_real_clip_streams_window_by_window(server: InProcessServer) -> None:
    audio = _pcm()
    with connect(_url(server)) as ws:
        ws.send(json.dumps(CONFIG))
        ready = json.loads(ws.recv(timeout=30))
        chunk = 1_600 * 2  # 0.1 s
        for start in range(0, len(audio), chunk):
            ws.send(audio[start : start + chunk])
        ws.send(json.dumps({"type": "end"}))
        messages, code, _ = _until_closed(ws)
    assert ready["type"] == "ready"
    assert (ready["model_name"], ready["model_version"], ready["hop_ms"]) == ("tiny", "1", 250)
    assert ready["labels"] == ["baroque", "classical", "jazz", "romantic"]
    windows = [m for m in messages if m["type"] == "window"]
    summary = messages[-1]
    assert code == 1000
    assert len(windows) == 23  # (6 s - 0.5 s) / 0.25 s + 1
    assert [w["index"] for w in windows] == list(range(23))
    assert windows[1]["start_ms"] == 250
    assert all(len(w["top_k"]) == 2 and len(w["smoothed_top_k"]) == 2 for w in windows)
    assert windows[3]["smoothed_scores"] != windows[3]["scores"]  # smoothing 0.5
    assert summary["type"] == "summary"
    assert (summary["windows"], summary["duration_s"], summary["end_reason"]) == (
        23,
        6.0,
        "complete",
    )
    # The same clip as one REST call: the same windows, so the same summary.
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        whole = client.post(
            "/v1/models/tiny/classify", content=CLIP.read_bytes(), params={"hop_ms": 250}
        ).json()
    np.testing.assert_allclose(summary["scores"], whole["summary"]["scores"], atol=1e-5)


def _failure(
    server: InProcessServer, *messages: str | bytes, model: str = "tiny"
) -> tuple[dict[str, Any], int, str]:
    with connect(_url(server, model)) as ws:
        for message in messages:
            ws.send(message)
        received, code, reason = _until_closed(ws)
    errors = [m for m in received if m["type"] == "error"]
    assert len(errors) == 1, received
    return errors[0], code, reason


def test_errors_end_with_4000_plus_the_status(server: InProcessServer) -> None:
    error, code, reason = _failure(server, b"\0\0")
    assert (error["code"], code, reason) == ("INVALID_ARGUMENT", 4003, "INVALID_ARGUMENT")
    assert "config" in error["message"]
    assert error["request_id"]
    error, code, _ = _failure(server, json.dumps(CONFIG), model="nope")
    assert (error["code"], code) == ("NOT_FOUND", 4005)
    bad = dict(CONFIG, top_k=99)
    error, code, _ = _failure(server, json.dumps(bad))
    assert (code, "top_k" in error["message"]) == (4003, True)
    error, code, _ = _failure(server, json.dumps(CONFIG | {"colour": 1}))
    assert (code, "colour" in error["message"]) == (4003, True)
    error, code, _ = _failure(server, json.dumps(CONFIG), json.dumps({"type": "more"}))
    assert (code, "binary" in error["message"]) == (4003, True)
    big = b"\0" * (1024 * 1024 + 2)  # over max_chunk_bytes (1 MiB by default)
    error, code, _ = _failure(server, json.dumps(CONFIG), big)
    assert (code, "max_chunk_bytes" in error["message"]) == (4003, True)


def test_tokens_come_in_the_config_or_a_header(model_repository: Path) -> None:
    with running_server(model_repository, auth_token="s3cret") as server:
        error, code, reason = _failure(server, json.dumps(CONFIG))
        assert (error["code"], code, reason) == ("UNAUTHENTICATED", 4016, "UNAUTHENTICATED")
        error, code, _ = _failure(server, json.dumps(CONFIG | {"token": "wrong"}))
        assert code == 4016
        for headers, config in (({}, CONFIG | {"token": "s3cret"}),
                                ({"authorization": "Bearer s3cret"}, CONFIG)):  # fmt: skip
            with connect(_url(server), additional_headers=headers) as ws:
                ws.send(json.dumps(config))
                ws.send(b"\0\0" * 8_000)
                ws.send(json.dumps({"type": "end"}))
                messages, code, _ = _until_closed(ws)
            assert code == 1000
            assert [m["type"] for m in messages] == ["ready", "window", "summary"]
        assert server.metric(
            "mozart_http_requests_total", method="StreamClassify", protocol="websocket",
            code="UNAUTHENTICATED",
        ) == 2  # fmt: skip


@pytest.mark.parametrize("encoding", ["pcm_f32le", "wav"])
def test_other_encodings_stream(server: InProcessServer, encoding: str) -> None:
    samples, _ = soundfile.read(CLIP, dtype="float32", frames=16_000)
    if encoding == "wav":
        import io  # noqa: PLC0415

        buffer = io.BytesIO()
        soundfile.write(buffer, samples, 16_000, format="WAV", subtype="PCM_16")
        audio = buffer.getvalue()
    else:
        audio = np.asarray(samples, dtype="<f4").tobytes()
    config = {"format": {"encoding": encoding, "sample_rate_hz": 16_000, "channels": 1}}
    with connect(_url(server)) as ws:
        ws.send(json.dumps(config))
        ws.send(audio)
        ws.send(json.dumps({"type": "end"}))
        messages, code, _ = _until_closed(ws)
    assert code == 1000
    assert messages[-1]["windows"] == 3  # 1 s, 0.5 s windows, the model's 250 ms hop


def test_a_stream_open_at_shutdown_ends_drained(model_repository: Path) -> None:
    with running_server(model_repository) as server, connect(_url(server)) as ws:
        ws.send(json.dumps(CONFIG))
        assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        ws.send(_pcm()[: 16_000 * 2])  # 1 s: three windows at a 250 ms hop
        assert json.loads(ws.recv(timeout=30))["type"] == "window"
        stopping = server.stop_in_background(grace_s=10.0)
        messages, code, _ = _until_closed(ws)  # no end: the server stops reading
        stopping.join(60)
    assert code == 1000
    assert messages[-1]["type"] == "summary"
    assert messages[-1]["end_reason"] == "drained"
