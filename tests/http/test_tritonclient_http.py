"""Triton's own HTTP client (`tritonclient[http]` from PyPI) against Mozart's v2 REST.

Nobody here wrote tritonclient.http: it builds its own JSON and binary tensors and
parses the answers itself, so these tests prove that Triton users' code works unchanged.
(It imports no protobuf, so unlike tritonclient.grpc it can share this interpreter.)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.support.audio import music_clip
from tests.support.server import InProcessServer

WINDOW = 8_000


@pytest.fixture(scope="module")
def triton_client(server: InProcessServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    yield client
    client.close()


def test_live_ready_and_metadata(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("tiny")
    assert triton_client.is_model_ready("tiny", "1")
    assert not triton_client.is_model_ready("nope")
    assert triton_client.get_server_metadata()["name"] == "mozart"
    metadata = triton_client.get_model_metadata("tiny")
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"][0] == {"name": "waveform", "datatype": "FP32", "shape": [-1, WINDOW]}
    config = triton_client.get_model_config("tiny")
    assert config["max_batch_size"] > 0
    assert config["input"][0]["dims"] == [WINDOW]
    stats = triton_client.get_inference_statistics("tiny")
    assert stats["model_stats"][0]["name"] == "tiny"
    index = triton_client.get_model_repository_index()
    assert index[0]["name"] == "tiny"


@pytest.mark.parametrize("binary", [True, False])
def test_infer(triton_client: triton.InferenceServerClient, binary: bool) -> None:
    windows = np.stack([music_clip(0.5, seed=seed) for seed in range(3)]).astype(np.float32)
    tensor = triton.InferInput("waveform", list(windows.shape), "FP32")
    tensor.set_data_from_numpy(windows, binary_data=binary)
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary)]
    result = triton_client.infer("tiny", [tensor], outputs=outputs, request_id="q")
    scores = result.as_numpy("probabilities")
    assert scores is not None
    assert scores.shape == (3, 4)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    assert result.get_response()["id"] == "q"
    # No outputs named: every output, in binary (tritonclient's binary_data_output).
    every = triton_client.infer("tiny", [tensor])
    np.testing.assert_allclose(every.as_numpy("probabilities"), scores, atol=1e-6)
    assert every.as_numpy("embedding") is not None


def test_errors_reach_the_client(triton_client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("waveform", [1, 5], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 5), dtype=np.float32))
    with pytest.raises(InferenceServerException) as bad:
        triton_client.infer("tiny", [tensor])
    assert bad.value.status() == "400"
    assert "shape" in bad.value.message()
    with pytest.raises(InferenceServerException) as missing:
        triton_client.get_model_metadata("nope")
    assert missing.value.status() == "404"
    window = triton.InferInput("waveform", [1, WINDOW], "FP32")
    window.set_data_from_numpy(music_clip(0.5)[np.newaxis])
    with pytest.raises(InferenceServerException) as late:
        triton_client.infer("tiny", [window], timeout=1)  # 1 us: past before it is queued
    assert late.value.status() == "504"
    assert (
        triton_client.infer("tiny", [window], timeout=60_000_000).as_numpy("probabilities")
        is not None
    )


def test_classification_extension(triton_client: triton.InferenceServerClient) -> None:
    windows = music_clip(0.5)[np.newaxis].astype(np.float32)
    tensor = triton.InferInput("waveform", list(windows.shape), "FP32")
    tensor.set_data_from_numpy(windows)
    outputs = [triton.InferRequestedOutput("probabilities", class_count=2)]
    top = triton_client.infer("tiny", [tensor], outputs=outputs).as_numpy("probabilities")
    assert top is not None
    assert top.shape == (1, 2)
    score, index, label = top[0][0].decode().split(":")
    assert label in ("baroque", "classical", "jazz", "romantic")
    assert 0.0 < float(score) <= 1.0
    assert int(index) >= 0
