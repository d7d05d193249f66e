"""The SDK's shared core through both clients, against a real server (ONNX Runtime, real audio).

Each behaviour that `Client` and `AsyncClient` share is run through both: checks at
call time, request ids, raw PCM channels, label names, raw and smoothed top-k, the
opt-in embedding, client-side resampling and the large-clip helper.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import soundfile

from mozart_client import (
    AsyncClient,
    Client,
    InvalidInputError,
    NotFoundError,
    ServerError,
    Summary,
    WindowResult,
)
from mozart_client.errors import REQUEST_ID_METADATA, ResourceExhaustedError
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.server.test_finite_scores import nan_for_negative_audio
from tests.support.audio import music_clip
from tests.support.models import build_test_model
from tests.support.server import InProcessServer, running_server, spawned_server

RATE = 16_000
KINDS = ("sync", "async")


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny` (16 kHz, 0.5 s windows, 8-float embedding) and `nanny`, whose embedding
    is the window's mean in each of its 4 entries and whose scores are NaN for a
    window of negative mean (INTERNAL)."""
    folder = tmp_path_factory.mktemp("models")
    build_test_model(folder)
    nan_for_negative_audio(folder)
    return folder


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[InProcessServer]:
    with running_server(repository) as running:
        yield running


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = tmp_path_factory.mktemp("audio") / "clip.wav"
    soundfile.write(path, music_clip(3.0, RATE, seed=5), RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def cd_rate_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = tmp_path_factory.mktemp("audio") / "cd.wav"
    stereo = np.stack([music_clip(2.0, 44_100, seed=6), music_clip(2.0, 44_100, seed=7)], 1)
    soundfile.write(path, stereo, 44_100, subtype="PCM_16")
    return path


def with_client(kind: str, address: str, action: Callable[[Any], Any], **options: Any) -> Any:
    """Runs `action(client)` on a Client, or awaits it on an AsyncClient (in its own loop).

    For the async client, `action` may return a coroutine, an async iterator (collected
    into a list) or a plain value.
    """
    if kind == "sync":
        with Client(address, **options) as client:
            value = action(client)
            return list(value) if isinstance(value, Iterator) else value

    async def scenario() -> Any:
        async with AsyncClient(address, **options) as client:
            value = action(client)
            if asyncio.iscoroutine(value):
                return await value
            if hasattr(value, "__aiter__"):
                return [item async for item in value]
            return value

    return asyncio.run(scenario())


def windows_of(results: list[Any]) -> list[WindowResult]:
    return [r for r in results if isinstance(r, WindowResult)]


@pytest.mark.parametrize("kind", KINDS)
def test_stream_checks_its_input_when_called_not_when_iterated(kind, server, tmp_path) -> None:
    missing = tmp_path / "missing.wav"
    calls = [
        lambda c: c.stream(missing, model="tiny"),
        lambda c: c.stream(np.zeros(RATE, np.float32), model="tiny", smoothing=1.5,
                           sample_rate_hz=RATE),
        lambda c: c.stream([b"\0\0"], encoding="wav", model="tiny", resample_on_client=True),
        lambda c: c.stream(np.zeros((RATE, 2), np.float32), sample_rate_hz=RATE, channels=3),
        lambda c: c.stream(np.zeros(RATE, np.float32), sample_rate_hz=RATE, hop_ms=-1),
    ]  # fmt: skip
    for make in calls:

        def call_only(client: Any, make: Callable[[Any], Any] = make) -> Any:
            try:
                make(client)  # never iterated: a bad input must raise here
            except InvalidInputError as error:
                return error.code  # None: raised locally, nothing was sent
            return "returned without raising"

        assert with_client(kind, server.address, call_only) is None


@pytest.mark.parametrize("kind", KINDS)
def test_request_ids_reach_the_server_and_come_back(kind, server, clip_path) -> None:
    result = with_client(
        kind, server.address, lambda c: c.classify(clip_path, model="tiny", request_id="rid-42")
    )
    assert result.request_id == "rid-42"
    assert {w.request_id for w in result.windows} == {"rid-42"}
    streamed = with_client(
        kind, server.address, lambda c: c.stream(clip_path, model="tiny", request_id="rid-43")
    )
    assert {r.request_id for r in streamed} == {"rid-43"}

    def missing_model(client: Any) -> Any:
        return client.model("nope", request_id="rid-44")

    with pytest.raises(NotFoundError) as caught:
        with_client(kind, server.address, missing_model)
    assert caught.value.request_id == "rid-44"
    # Without one, the SDK makes one up (uuid4 hex), and the error carries it.
    with pytest.raises(NotFoundError) as caught:
        with_client(kind, server.address, lambda c: c.model("nope"))
    assert re.fullmatch("[0-9a-f]{32}", caught.value.request_id)
    generated = with_client(kind, server.address, lambda c: c.classify(clip_path, model="tiny"))
    assert re.fullmatch("[0-9a-f]{32}", generated.request_id)
    # The error names the id of the server's answer (its logs'): a long one is cut there.
    long_id = "x" * 200
    with pytest.raises(NotFoundError) as caught:
        with_client(kind, server.address, lambda c: c.model("nope", request_id=long_id))
    assert caught.value.request_id == "x" * 128 + "... (72 more characters)"


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_stream_keeps_its_status_and_request_id(kind, server) -> None:
    """Ten times: an asyncio client that wrote audio while the server refused the config
    saw INTERNAL "Internal error from Core" about two times in three (grpc/grpc#36066);
    it now holds its audio until the server accepts the config."""
    audio = np.zeros(RATE, np.float32)

    def stream_to_missing_model(client: Any) -> Any:
        return client.stream(audio, sample_rate_hz=RATE, model="nope", request_id="rid-s")

    for _ in range(10):
        with pytest.raises(NotFoundError) as caught:
            with_client(kind, server.address, stream_to_missing_model)
        assert caught.value.request_id == "rid-s"


def test_every_answer_has_the_request_id_in_trailing_metadata(server, clip_path) -> None:
    """What the SDK relies on, seen on a bare channel: OK and failed, unary and stream."""

    def trailing_id(metadata: Any) -> str:
        return str(dict(metadata or ()).get(REQUEST_ID_METADATA, ""))

    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.AudioClassifierStub(channel)
        _, call = stub.ListModels.with_call(
            pb.ListModelsRequest(), metadata=((REQUEST_ID_METADATA, "bare-1"),)
        )
        assert trailing_id(call.trailing_metadata()) == "bare-1"
        with pytest.raises(grpc.RpcError) as failed:
            stub.GetModel(pb.GetModelRequest(model=pb.ModelRef(name="nope")),
                          metadata=((REQUEST_ID_METADATA, "bare-2"),))  # fmt: skip
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND
        assert trailing_id(failed.value.trailing_metadata()) == "bare-2"
        # Without an id the server makes one up, and still returns it.
        _, call = stub.ListModels.with_call(pb.ListModelsRequest())
        assert re.fullmatch("[0-9a-f]{32}", trailing_id(call.trailing_metadata()))
        config = pb.StreamClassifyRequest(config=pb.StreamConfig(
            model=pb.ModelRef(name="tiny"),
            format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=RATE,
                                  channels=1)))  # fmt: skip
        audio = pb.StreamClassifyRequest(audio=np.zeros(RATE, "<i2").tobytes())
        stream = stub.StreamClassify(iter([config, audio]),
                                     metadata=((REQUEST_ID_METADATA, "bare-3"),))  # fmt: skip
        # Initial metadata once the config is accepted (before any audio is read).
        assert dict(stream.initial_metadata())["x-mozart-stream-accepted"] == "1"
        assert list(stream)[-1].is_final
        assert trailing_id(stream.trailing_metadata()) == "bare-3"
        bad = stub.StreamClassify(iter([audio]), metadata=((REQUEST_ID_METADATA, "bare-4"),))
        with pytest.raises(grpc.RpcError) as failed:
            list(bad)
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert trailing_id(bad.trailing_metadata()) == "bare-4"


def test_internal_errors_carry_the_request_id_the_server_logged(repository: Path) -> None:
    negative = -np.abs(music_clip(1.0, RATE, seed=2)) - 0.1
    with spawned_server(repository) as spawned, Client(spawned.address) as client:
        with pytest.raises(ServerError) as caught:
            client.classify(negative, sample_rate_hz=RATE, model="nanny")
        assert caught.value.code == grpc.StatusCode.INTERNAL
        request_id = caught.value.request_id
        assert re.fullmatch("[0-9a-f]{32}", request_id)
        logged = [entry for entry in spawned.logs if entry.get("request_id") == request_id]
        assert logged, spawned.logs[-5:]
        assert any(entry.get("level") in ("ERROR", "error") for entry in logged), logged


@pytest.mark.parametrize("kind", KINDS)
def test_raw_pcm_bytes_take_channels(kind, server) -> None:
    stereo = np.stack([music_clip(2.0, RATE, seed=3), music_clip(2.0, RATE, seed=4)], axis=1)
    pcm = (stereo * 32767).astype("<i2")
    as_array = with_client(
        kind, server.address, lambda c: c.classify(pcm, sample_rate_hz=RATE, model="tiny")
    )
    as_bytes = with_client(
        kind,
        server.address,
        lambda c: c.classify(pcm.tobytes(), encoding="pcm_s16le", sample_rate_hz=RATE,
                             channels=2, model="tiny"),
    )  # fmt: skip
    assert len(as_bytes.windows) == len(as_array.windows)
    np.testing.assert_allclose(as_bytes.summary.scores, as_array.summary.scores, atol=1e-6)
    # Read as mono, the same bytes are twice as long: the old silent assumption.
    as_mono = with_client(
        kind,
        server.address,
        lambda c: c.classify(pcm.tobytes(), encoding="pcm_s16le", sample_rate_hz=RATE,
                             model="tiny"),
    )  # fmt: skip
    assert len(as_mono.windows) > len(as_array.windows)
    with pytest.raises(InvalidInputError, match="channels=1, but the array has 2"):
        with_client(
            kind,
            server.address,
            lambda c: c.classify(pcm, sample_rate_hz=RATE, channels=1, model="tiny"),
        )


@pytest.mark.parametrize("kind", KINDS)
def test_stream_results_name_their_scores_and_carry_raw_and_smoothed_top_k(
    kind, server, clip_path
) -> None:
    labels = with_client(kind, server.address, lambda c: c.model("tiny")).labels
    results = with_client(
        kind,
        server.address,
        lambda c: c.stream(clip_path, model="tiny", hop_ms=125, smoothing=0.9, top_k=3),
    )
    windows = windows_of(results)
    summary = results[-1]
    assert isinstance(summary, Summary)
    assert all(w.labels == labels for w in windows)
    assert summary.labels == labels
    for window in windows:
        assert window.score_of(labels[1]) == window.scores[1]
        assert window.score_of(labels[1], smoothed=True) == window.smoothed_scores[1]
        raw = sorted(range(len(labels)), key=lambda i: -window.scores[i])[:3]
        smoothed = sorted(range(len(labels)), key=lambda i: -window.smoothed_scores[i])[:3]
        assert [s.label for s in window.top_k] == [labels[i] for i in raw]
        assert [s.label for s in window.smoothed_top_k] == [labels[i] for i in smoothed]
        assert window.smoothed_label == window.smoothed_top_k[0].label
    assert windows[0].smoothed_top_k == windows[0].top_k  # nothing to smooth with yet
    # Heavy smoothing on music that changes makes the two orders differ somewhere.
    assert any(w.smoothed_top_k != w.top_k for w in windows)
    with pytest.raises(KeyError, match="no label 'nope'"):
        windows[0].score_of("nope")
    unsmoothed = windows_of(with_client(kind, server.address,
                                        lambda c: c.stream(clip_path, model="tiny")))  # fmt: skip
    assert all(w.smoothed_top_k == w.top_k for w in unsmoothed)


@pytest.mark.parametrize("kind", KINDS)
def test_the_embedding_is_opt_in_and_is_the_graphs_output(kind, server) -> None:
    audio = np.abs(music_clip(1.5, RATE, seed=8)).astype(np.float32)
    plain = with_client(
        kind, server.address, lambda c: c.classify(audio, sample_rate_hz=RATE, model="nanny")
    )
    assert all(w.embedding == () for w in plain.windows)
    asked = with_client(
        kind,
        server.address,
        lambda c: c.classify(audio, sample_rate_hz=RATE, model="nanny", hop_ms=250,
                             include_embedding=True),
    )  # fmt: skip
    hop = RATE // 4
    for window in asked.windows:
        # nanny's embedding is the window's mean in each of its four entries.
        mean = audio[window.index * hop : window.index * hop + 8_000].mean()
        np.testing.assert_allclose(window.embedding, [mean] * 4, rtol=1e-4)
    streamed = windows_of(
        with_client(
            kind,
            server.address,
            lambda c: c.stream(audio, sample_rate_hz=RATE, model="nanny", hop_ms=250,
                               include_embedding=True),
        )
    )  # fmt: skip
    assert len(streamed) == len(asked.windows)
    np.testing.assert_allclose(
        [w.embedding for w in streamed], [w.embedding for w in asked.windows], rtol=1e-4
    )
    tiny = with_client(
        kind,
        server.address,
        lambda c: c.classify(audio, sample_rate_hz=RATE, model="tiny", include_embedding=True),
    )
    assert {len(w.embedding) for w in tiny.windows} == {8}


@pytest.mark.parametrize("kind", KINDS)
def test_resampling_on_the_client_gives_the_servers_windows(kind, server, cd_rate_path) -> None:
    on_server = windows_of(
        with_client(kind, server.address, lambda c: c.stream(cd_rate_path, model="tiny"))
    )
    on_client = with_client(
        kind, server.address,
        lambda c: c.stream(cd_rate_path, model="tiny", resample_on_client=True),
    )  # fmt: skip
    assert [w.index for w in windows_of(on_client)] == [w.index for w in on_server]
    np.testing.assert_allclose(
        [w.scores for w in windows_of(on_client)], [w.scores for w in on_server], atol=1e-4
    )
    assert on_client[-1].audio_duration_ms == pytest.approx(2000, abs=2)


@pytest.mark.parametrize("kind", KINDS)
def test_classify_large_streams_a_clip_too_big_for_one_message(kind, server, clip_path) -> None:
    small = 64 * 1024  # the clip is about 96 KB of 16-bit WAV
    whole = with_client(kind, server.address,
                        lambda c: c.classify(clip_path, model="tiny", hop_ms=250))  # fmt: skip
    with pytest.raises(ResourceExhaustedError):
        with_client(
            kind,
            server.address,
            lambda c: c.classify(clip_path, model="tiny", hop_ms=250),
            max_message_bytes=small,
        )
    large = with_client(
        kind,
        server.address,
        lambda c: c.classify_large(clip_path, model="tiny", hop_ms=250, request_id="big-1"),
        max_message_bytes=small,
    )
    assert (large.model_name, large.model_version, large.labels) == (
        whole.model_name, whole.model_version, whole.labels,
    )  # fmt: skip
    assert large.request_id == "big-1"
    assert [w.index for w in large.windows] == [w.index for w in whole.windows]
    assert [w.start_ms for w in large.windows] == [w.start_ms for w in whole.windows]
    np.testing.assert_allclose(
        [w.scores for w in large.windows], [w.scores for w in whole.windows], atol=1e-4
    )
    np.testing.assert_allclose(large.summary.scores, whole.summary.scores, atol=1e-4)
    assert large.summary.window_count == whole.summary.window_count
