"""A gRPC stream and a WebSocket stream at once share the model version's batches.

Each stream may have one window queued or computing (max_windows_in_flight_per_stream=1),
so a batch of two windows holds one window of each stream: one from gRPC, one from the
WebSocket. The batcher waits for a second window (max_batch_size 2, a long queue delay).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import grpc
from websockets.sync.client import connect

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.server.streams import audio_messages, config_message, run_stream
from tests.support.audio import encode, music_clip
from tests.support.server import running_server

SECONDS = 2.0  # 4 windows of 0.5 s at a 0.5 s hop, on each stream


def test_grpc_and_websocket_windows_share_batches(model_repository: Path) -> None:
    settings = {"max_batch_size": 2, "preferred_batch_sizes": [2],
                "max_queue_delay_us": 1_000_000, "max_windows_in_flight_per_stream": 1}  # fmt: skip
    audio = encode(music_clip(SECONDS), 16_000, pb.AUDIO_ENCODING_PCM_S16LE)
    with running_server(model_repository, **settings) as server:
        results: dict[str, Any] = {}

        def over_grpc() -> None:
            with grpc.insecure_channel(server.address) as channel:
                stub = pb_grpc.AudioClassifierStub(channel)
                messages = [config_message(hop_ms=500), *audio_messages(audio, [3_200])]
                results["grpc"] = run_stream(stub, messages)

        def over_websocket() -> None:
            url = f"ws://127.0.0.1:{server.http_port}/v1/models/tiny/stream"
            with connect(url) as ws:
                ws.send(json.dumps({"format": {"encoding": "pcm_s16le", "sample_rate_hz": 16_000,
                                               "channels": 1}, "hop_ms": 500}))  # fmt: skip
                for start in range(0, len(audio), 3_200):
                    ws.send(audio[start : start + 3_200])
                ws.send(json.dumps({"type": "end"}))
                results["websocket"] = [json.loads(m) for m in ws]

        threads = [threading.Thread(target=over_grpc), threading.Thread(target=over_websocket)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        responses, error = results["grpc"]
        assert error is None
        assert responses[-1].summary.window_count == 4
        assert results["websocket"][-1]["windows"] == 4
        batches = server.metric("mozart_batch_size_count", model="tiny")
        single = server.metric("mozart_batch_size_bucket", model="tiny", le="1.0")
        windows = server.metric("mozart_batch_size_sum", model="tiny")
        assert windows == 8
        assert batches - single >= 1  # at least one batch held a window of each stream
        assert server.metric("mozart_requests_total", method="StreamClassify", code="OK") == 1
        assert server.metric(
            "mozart_http_requests_total", method="StreamClassify", protocol="websocket",
            code="OK",
        ) == 1  # fmt: skip
