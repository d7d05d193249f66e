"""Classify, ListModels, GetModel and health against a real server and real ONNX Runtime."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.support.audio import encode, music_clip
from tests.support.models import build_test_model
from tests.support.server import InProcessServer, running_server

WAV = pb.AUDIO_ENCODING_WAV


@pytest.fixture
def stub(server: InProcessServer):
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.AudioClassifierStub(channel)


def classify(stub, samples, rate=16_000, encoding=WAV, **fields) -> pb.ClassifyResponse:
    request = pb.ClassifyRequest(
        model=pb.ModelRef(name="tiny"),
        format=pb.AudioFormat(encoding=encoding, sample_rate_hz=rate, channels=1),
        audio=encode(samples, rate, encoding),
        **fields,
    )
    response: pb.ClassifyResponse = stub.Classify(request, timeout=30)
    return response


def test_classify_returns_a_result_per_hop_and_the_mean_as_summary(stub) -> None:
    clip = music_clip(2.0, 16_000, seed=1)
    response = classify(stub, clip, hop_ms=250, top_k=2)
    # 2 s, 0.5 s windows, 0.25 s hop: windows start at 0, 0.25, ..., 1.5 s.
    assert [w.index for w in response.windows] == list(range(7))
    assert [w.start_ms for w in response.windows] == [0, 250, 500, 750, 1000, 1250, 1500]
    assert all(w.end_ms - w.start_ms == 500 for w in response.windows)
    scores = np.array([w.scores for w in response.windows])
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(response.summary.scores, scores.mean(axis=0), rtol=1e-5)
    assert response.summary.window_count == 7
    assert response.summary.audio_duration_ms == 2000
    assert len(response.windows[0].top_k) == 2
    best = int(np.argmax(scores[0]))
    assert response.windows[0].top_k[0].label == response.labels[best]
    assert response.model_name == "tiny"
    assert response.model_version == "1"
    assert response.request_id


def test_scores_depend_on_the_audio(stub) -> None:
    quiet = classify(stub, music_clip(1.0, seed=2) * 0.01)
    loud = classify(stub, music_clip(1.0, seed=3))
    assert not np.allclose(quiet.summary.scores, loud.summary.scores, atol=1e-3)


@pytest.mark.parametrize(
    "encoding",
    [pb.AUDIO_ENCODING_PCM_S16LE, pb.AUDIO_ENCODING_PCM_F32LE, pb.AUDIO_ENCODING_FLAC,
     pb.AUDIO_ENCODING_OGG],
)  # fmt: skip
def test_every_encoding_and_rate_decodes_to_similar_scores(stub, encoding) -> None:
    clip = music_clip(1.5, 44_100, seed=4)
    reference = classify(stub, clip, rate=44_100)
    other = classify(stub, clip, rate=44_100, encoding=encoding)
    assert len(other.windows) == len(reference.windows)
    # Lossy OGG differs a little; lossless formats differ by rounding only.
    tolerance = 0.05 if encoding == pb.AUDIO_ENCODING_OGG else 1e-3
    np.testing.assert_allclose(other.summary.scores, reference.summary.scores, atol=tolerance)


def test_stereo_is_downmixed(stub) -> None:
    clip = music_clip(1.0, seed=5)
    mono = classify(stub, clip, encoding=pb.AUDIO_ENCODING_PCM_F32LE)
    stereo_request = pb.ClassifyRequest(
        model=pb.ModelRef(name="tiny"),
        format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_PCM_F32LE, sample_rate_hz=16_000,
                              channels=2),
        audio=encode(clip, 16_000, pb.AUDIO_ENCODING_PCM_F32LE, channels=2),
    )  # fmt: skip
    stereo = stub.Classify(stereo_request, timeout=30)
    np.testing.assert_allclose(stereo.summary.scores, mono.summary.scores, rtol=1e-5)


def test_a_clip_shorter_than_a_window_gets_one_padded_window(stub) -> None:
    response = classify(stub, music_clip(0.1, seed=6))
    assert len(response.windows) == 1
    assert response.summary.audio_duration_ms == 100


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(
    server: InProcessServer, stub
) -> None:
    clips = [music_clip(1.0, seed=seed) for seed in range(12)]
    alone = [classify(stub, clip).summary.scores for clip in clips]
    batches_before = server.metric("mozart_batch_size_count")
    windows_before = server.metric("mozart_batch_size_sum")
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        together = list(pool.map(lambda clip: classify(stub, clip).summary.scores, clips))
    for mine, reference in zip(together, alone, strict=True):
        np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-6)
    batches = server.metric("mozart_batch_size_count") - batches_before
    windows = server.metric("mozart_batch_size_sum") - windows_before
    assert windows == 12 * 3  # 1 s clips, 0.5 s windows, 0.25 s hop
    assert batches <= windows  # batch count never exceeds windows; usually far fewer


def test_list_and_get_models(stub) -> None:
    listed = stub.ListModels(pb.ListModelsRequest(), timeout=10)
    assert [model.name for model in listed.models] == ["tiny"]
    info = stub.GetModel(pb.GetModelRequest(model=pb.ModelRef(name="tiny")), timeout=10)
    assert info.versions == ["1"]
    assert (info.sample_rate_hz, info.window_samples, info.window_ms) == (16_000, 8_000, 500)
    assert info.task == pb.TASK_MULTICLASS
    assert len(info.labels) == 4


@pytest.mark.parametrize(
    ("name", "version", "needle"), [("nope", "", "'nope'"), ("tiny", "9", "'9'")]
)
def test_unknown_model_or_version_is_not_found(stub, name, version, needle) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetModel(pb.GetModelRequest(model=pb.ModelRef(name=name, version=version)))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert needle in str(caught.value.details())


@pytest.mark.parametrize("service", ["", "mozart.v1.AudioClassifier"])
def test_health_check_reports_serving(server: InProcessServer, service: str) -> None:
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_versions_policy_and_a_broken_version_do_not_take_the_server_down(tmp_path: Path) -> None:
    build_test_model(tmp_path, "tiny", "1", seed=0)
    build_test_model(tmp_path, "tiny", "2", seed=1)
    build_test_model(tmp_path, "tiny", "3", seed=2)
    broken = build_test_model(tmp_path, "broken", "1")
    (broken / "model.json").write_text((broken / "model.json").read_text().replace(
        '"window_samples": 8000', '"window_samples": 4000'))  # fmt: skip
    with running_server(tmp_path, latest_versions=2) as server:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.AudioClassifierStub(channel)
            info = stub.GetModel(pb.GetModelRequest(model=pb.ModelRef(name="tiny")))
            assert list(info.versions) == ["2", "3"]
            clip = music_clip(1.0, seed=7)
            newest = classify(stub, clip)
            assert newest.model_version == "3"
            request = pb.ClassifyRequest(
                model=pb.ModelRef(name="tiny", version="2"),
                format=pb.AudioFormat(encoding=WAV), audio=encode(clip, 16_000, WAV),
            )  # fmt: skip
            assert stub.Classify(request).model_version == "2"
            with pytest.raises(grpc.RpcError) as caught:
                stub.GetModel(pb.GetModelRequest(model=pb.ModelRef(name="broken")))
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert server.metric("mozart_model_loaded", model="broken", version="1") == 0
        assert server.metric("mozart_model_loaded", model="tiny", version="3") == 1
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.AudioClassifierStub(channel)
            statuses = stub.ListModelStatus(pb.ListModelStatusRequest()).models
        failures = [
            (model.name, entry.version, entry.reason)
            for model in statuses
            for entry in model.versions
            if entry.state == pb.VERSION_STATE_UNAVAILABLE
        ]
        assert [(name, version) for name, version, _ in failures] == [("broken", "1")]
        assert "window_samples" in failures[0][2]
