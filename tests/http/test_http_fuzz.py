"""Hypothesis fuzz of the HTTP API: request bodies, query strings, v2 JSON, WebSocket messages.

Every answer is a success or a documented error (a 4xx with the documented shape, or
503); never a 500, never a hang (each client read has a timeout), and a WebSocket
always closes with 1000 or 4000 + a documented status, never INTERNAL or UNKNOWN.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from mozart_proto.v1 import audio_classifier_pb2 as pb
from tests.support.audio import encode, music_clip
from tests.support.server import InProcessServer

DOCUMENTED = {200, 400, 404, 409, 413, 429, 503}
UNDOCUMENTED_CLOSES = {4002, 4013}  # UNKNOWN, INTERNAL
FUZZ = settings(
    max_examples=25, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
WAV = encode(music_clip(1.0), 16_000, pb.AUDIO_ENCODING_WAV)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def http(server: InProcessServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        yield client


def _documented(response: httpx.Response) -> None:
    assert response.status_code in DOCUMENTED, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error, str) or {"code", "message", "request_id"} <= set(error)


def _mutated(data: bytes, cuts: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, value in cuts:
        if out:
            out[position % len(out)] = value
    return bytes(out)


@FUZZ
@given(
    body=st.binary(max_size=2048) | st.builds(
        _mutated, st.just(WAV), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)))
    ),
    content_type=st.sampled_from(["", "audio/wav", "audio/flac", "application/octet-stream",
                                  "multipart/form-data; boundary=x", "text/plain", "audio/mpeg"]),
    params=st.dictionaries(
        st.sampled_from(["hop_ms", "top_k", "encoding", "sample_rate_hz", "channels", "version"]),
        st.integers(-5, 10**6).map(str) | st.text(max_size=6)
        | st.sampled_from(["pcm_s16le", "pcm_f32le", "wav"]),
        max_size=4,
    ),
)  # fmt: skip
def test_classify_bodies(
    http: httpx.Client, body: bytes, content_type: str, params: dict[str, str]
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    _documented(http.post("/v1/models/tiny/classify", content=body, headers=headers, params=params))


def _infer_documents() -> st.SearchStrategy[Any]:
    tensor = st.fixed_dictionaries(
        {"name": st.sampled_from(["waveform", "x", ""]) | json_values,
         "datatype": st.sampled_from(["FP32", "INT64", "BYTES", "FP16", "BOOL"]) | json_values,
         "shape": st.lists(st.integers(-2, 9000), max_size=3) | json_values,
         "data": st.lists(st.floats(width=32) | st.integers(-3, 3), max_size=16) | json_values},
        optional={"parameters": st.dictionaries(
            st.sampled_from(["binary_data_size", "other"]), json_values, max_size=2)},
    )  # fmt: skip
    output = st.fixed_dictionaries(
        {"name": st.sampled_from(["probabilities", "embedding", "nope"]) | json_values},
        optional={"parameters": st.dictionaries(
            st.sampled_from(["binary_data", "classification"]), json_values, max_size=2)},
    )  # fmt: skip
    return st.fixed_dictionaries(
        {"inputs": st.lists(tensor, max_size=2) | json_values},
        optional={"outputs": st.lists(output, max_size=2) | json_values,
                  "id": json_values, "parameters": json_values},
    ) | json_values  # fmt: skip


@FUZZ
@given(
    document=_infer_documents(),
    binary=st.binary(max_size=64),
    header_length=st.none()
    | st.integers(-3, 4096).map(str)
    | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=4),
)
def test_v2_infer_bodies(
    http: httpx.Client, document: Any, binary: bytes, header_length: str | None
) -> None:
    head = json.dumps(document).encode()
    headers = {} if header_length is None else {"inference-header-content-length": header_length}
    _documented(http.post("/v2/models/tiny/infer", content=head + binary, headers=headers))


ws_messages = st.lists(
    st.binary(max_size=4096) | st.text(max_size=64) | json_values.map(json.dumps), max_size=6
)
configs = st.fixed_dictionaries(
    {"format": st.fixed_dictionaries(
        {"encoding": st.sampled_from(["pcm_s16le", "pcm_f32le", "wav", "ogg"]) | json_values,
         "sample_rate_hz": st.sampled_from([16_000, 44_100, 7_999]) | json_values,
         "channels": st.sampled_from([1, 2, 3]) | json_values}) | json_values},
    optional={"hop_ms": st.integers(0, 1000) | json_values,
              "top_k": st.integers(0, 5) | json_values,
              "smoothing": st.floats() | json_values, "version": json_values},
).map(json.dumps) | st.text(max_size=32) | st.binary(max_size=32)  # fmt: skip


@settings(FUZZ, max_examples=20)
@given(first=configs, rest=ws_messages, end=st.booleans())
def test_websocket_messages(
    server: InProcessServer, first: str | bytes, rest: list[str | bytes], end: bool
) -> None:
    with connect(f"ws://127.0.0.1:{server.http_port}/v1/models/tiny/stream") as ws:
        try:
            for message in [first, *rest]:
                ws.send(message)
            if end:
                ws.send(json.dumps({"type": "end"}))
            else:
                ws.close()
                return
            while True:
                received = json.loads(ws.recv(timeout=30))
                assert received["type"] in {"ready", "window", "notice", "summary", "error"}
                if received["type"] == "error":
                    assert received["code"] not in {"INTERNAL", "UNKNOWN"}, received
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else 1000
            assert code not in UNDOCUMENTED_CLOSES
            assert code == 1000 or 4000 < code < 4017
