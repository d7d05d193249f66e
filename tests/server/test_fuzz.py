"""A bounded fuzz run through the real API: mutated real audio files and raw bytes on the wire.

Against one server process, for a fixed number of seeded cases:
- real WAV, FLAC and Ogg files of music, with bytes flipped, cut, duplicated or spliced,
  sent to Classify (container encodings) and to streams (WAV);
- raw byte strings sent as the serialized request of Classify, StreamClassify messages
  and v2 ModelInfer, bypassing protobuf on the client.
Every answer is OK with finite scores that sum to 1 (the test model is multiclass), or a
status the error contract documents; never INTERNAL or UNKNOWN. Afterwards the server's
open descriptors and memory are back within a bound of where they started.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.server.streams import audio_messages, config_message
from tests.support.audio import encode, music_clip
from tests.support.server import SpawnedServer, spawned_server

RATE = 16_000
CASES = 150
WIRE_CASES = 150
UNDOCUMENTED = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
FD_SLACK = 16
RSS_SLACK_MB = 150


def _mutations(data: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    mutated = bytearray(data)
    if kind == 0:  # flip bytes
        for _ in range(rng.randint(1, 32)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
    elif kind == 1:  # cut
        del mutated[rng.randrange(len(mutated)) :]
    elif kind == 2:  # duplicate a span
        start = rng.randrange(len(mutated))
        mutated[start:start] = mutated[start : start + rng.randint(1, 4096)]
    elif kind == 3:  # splice random bytes into the header region
        start = rng.randrange(min(len(mutated), 128))
        mutated[start : start + 8] = bytes(rng.randrange(256) for _ in range(8))
    else:  # drop a span
        start = rng.randrange(len(mutated))
        del mutated[start : start + rng.randint(1, 4096)]
    return bytes(mutated)


def _process(server: SpawnedServer) -> tuple[int, float]:
    pid = server.process.pid
    fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return fds, int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _check_ok(response: pb.ClassifyResponse) -> None:
    for window in response.windows:
        scores = np.asarray(window.scores)
        assert np.isfinite(scores).all()
        assert abs(scores.sum() - 1.0) < 1e-3


@pytest.fixture(scope="module")
def server(model_repository: Path):
    with spawned_server(model_repository) as running:
        yield running


def test_mutated_real_files_never_get_an_undocumented_status(server) -> None:
    rng = random.Random(11)
    clip = music_clip(1.5, RATE, seed=5)
    originals = {
        encoding: encode(clip, RATE, encoding)
        for encoding in (pb.AUDIO_ENCODING_WAV, pb.AUDIO_ENCODING_FLAC, pb.AUDIO_ENCODING_OGG)
    }
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.AudioClassifierStub(channel)
        # Warm up, then measure where the process starts.
        stub.Classify(
            pb.ClassifyRequest(model=pb.ModelRef(name="tiny"),
                               format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_WAV),
                               audio=originals[pb.AUDIO_ENCODING_WAV]),
            timeout=30,
        )  # fmt: skip
        fds_before, rss_before = _process(server)
        codes: dict[str, int] = {}
        for case in range(CASES):
            encoding = rng.choice(list(originals))
            audio = _mutations(originals[encoding], rng)
            try:
                if case % 3 == 0 and encoding == pb.AUDIO_ENCODING_WAV:
                    messages = [config_message(encoding=encoding),
                                *audio_messages(audio, [rng.randint(1, 9000)])]  # fmt: skip
                    list(stub.StreamClassify(iter(messages), timeout=30))
                    codes["OK"] = codes.get("OK", 0) + 1
                    continue
                response = stub.Classify(
                    pb.ClassifyRequest(model=pb.ModelRef(name="tiny"),
                                       format=pb.AudioFormat(encoding=encoding), audio=audio),
                    timeout=30,
                )  # fmt: skip
                _check_ok(response)
                codes["OK"] = codes.get("OK", 0) + 1
            except grpc.RpcError as error:
                failure = (case, error.code(), error.details())
                codes[error.code().name] = codes.get(error.code().name, 0) + 1
                undocumented = error.code() in UNDOCUMENTED
            else:
                undocumented = False
            assert not undocumented, failure
        fds_after, rss_after = _process(server)
    print(f"\nmutated files: {codes}; fds {fds_before}->{fds_after}, "
          f"RSS {rss_before:.0f}->{rss_after:.0f} MB")  # fmt: skip
    assert codes.get("OK", 0) > 0
    assert codes.get("INVALID_ARGUMENT", 0) > 0
    assert fds_after <= fds_before + FD_SLACK
    assert rss_after <= rss_before + RSS_SLACK_MB


def test_raw_bytes_on_the_wire_are_invalid_argument_at_worst(server) -> None:
    rng = random.Random(12)
    with grpc.insecure_channel(server.address) as channel:
        calls: dict[str, Any] = {
            "Classify": channel.unary_unary("/mozart.v1.AudioClassifier/Classify", None, None),
            "ModelInfer": channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer", None, None
            ),
            "StreamClassify": channel.stream_stream(
                "/mozart.v1.AudioClassifier/StreamClassify", None, None
            ),
        }
        codes: dict[str, int] = {}
        for case in range(WIRE_CASES):
            name = rng.choice(list(calls))
            payload = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
            try:
                if name == "StreamClassify":
                    list(calls[name](iter([payload]), timeout=10))
                else:
                    calls[name](payload, timeout=10)
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
            assert code not in UNDOCUMENTED, (case, name, payload.hex())
            codes[code.name] = codes.get(code.name, 0) + 1
    print(f"\nraw wire bytes: {codes}")
    assert server.metric("mozart_requests_total", code="INTERNAL") == 0
    assert server.metric("mozart_requests_total", code="UNKNOWN") == 0
