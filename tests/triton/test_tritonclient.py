"""Triton's own Python client (`tritonclient[grpc]` from PyPI) against a real Mozart server.

Nobody here wrote tritonclient: it serialises with its own compiled copy of
Triton's grpc_service.proto and decodes only raw_output_contents, so these tests
prove wire compatibility, not agreement with our own stubs. The client runs in a
child process (see tritonclient_session.py for why).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.support.audio import music_clip
from tests.support.server import InProcessServer

WINDOW = 8_000  # the tiny test model: 0.5 s at 16 kHz
LABELS = 4
LABEL_NAMES = ["baroque", "classical", "jazz", "romantic"]  # tests/support/models.py
SESSION = Path(__file__).with_name("tritonclient_session.py")


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return np.stack([music_clip(0.5, 16_000, seed=seed) for seed in range(4)])


@pytest.fixture(scope="module")
def session(server: InProcessServer, windows: np.ndarray, tmp_path_factory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("triton") / "windows.npy"
    np.save(path, windows)
    completed = subprocess.run(
        [sys.executable, str(SESSION), server.address, str(path)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


def test_liveness_and_readiness(session) -> None:
    assert session["server_live"] is True
    assert session["server_ready"] is True
    assert session["model_ready"] is True
    assert session["model_version_ready"] is True
    assert session["unknown_model_ready"] is False
    assert session["server_metadata"]["name"] == "mozart"
    assert "model_configuration" in session["server_metadata"]["extensions"]


def test_model_metadata_describes_the_tensors(session) -> None:
    metadata = session["model_metadata"]
    assert metadata["name"] == "tiny"
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [
        {"name": "waveform", "datatype": "FP32", "shape": ["-1", str(WINDOW)]}
    ]
    assert [(o["name"], o["datatype"], o["shape"]) for o in metadata["outputs"]] == [
        ("probabilities", "FP32", ["-1", str(LABELS)]),
        ("logits", "FP32", ["-1", str(LABELS)]),
        ("embedding", "FP32", ["-1", "8"]),
    ]


def test_model_config_follows_triton(session, server: InProcessServer) -> None:
    config = session["model_config"]["config"]
    assert config["name"] == "tiny"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["backend"] == "onnxruntime"
    assert config["default_model_filename"] == "model.onnx"  # the version lists no artifact
    instances = server.server.settings.engine.onnx.instances  # auto: from the usable CPUs
    assert config["instance_group"] == [
        {"name": "tiny_cpu", "count": instances, "kind": "KIND_CPU"}
    ]
    assert config["parameters"] == {
        "precision": {"string_value": "fp32"}, "artifact": {"string_value": "model.onnx"},
        "labels": {"string_value": json.dumps(LABEL_NAMES)},
    }  # fmt: skip
    assert config["input"] == [
        {"name": "waveform", "data_type": "TYPE_FP32", "dims": [str(WINDOW)]}
    ]
    # Triton's label_filename on the outputs that have one value per label: the labels
    # are the `labels` of the version's model.json (and the "labels" parameter above).
    assert [(o["name"], o.get("label_filename")) for o in config["output"]] == [
        ("probabilities", "model.json"), ("logits", "model.json"), ("embedding", None)
    ]  # fmt: skip
    assert config["max_batch_size"] == server.server.settings.batching.max_batch_size
    batching = config["dynamic_batching"]
    assert [int(b) for b in batching["preferred_batch_size"]] == list(
        server.server.settings.batching.preferred_batch_sizes
    )


def test_probabilities_match_native_classify_on_the_same_windows(
    session, server: InProcessServer, windows: np.ndarray
) -> None:
    probabilities = np.array(session["infer"]["probabilities"])
    assert probabilities.shape == (len(windows), LABELS)
    assert session["infer"]["embedding_shape"] == [len(windows), 8]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.AudioClassifierStub(channel)
        for row, window in zip(probabilities, windows, strict=True):
            native = stub.Classify(
                pb.ClassifyRequest(
                    model=pb.ModelRef(name="tiny"),
                    format=pb.AudioFormat(
                        encoding=pb.AUDIO_ENCODING_PCM_F32LE, sample_rate_hz=16_000, channels=1
                    ),
                    audio=window.astype("<f4").tobytes(),
                ),
                timeout=30,
            )
            assert len(native.windows) == 1
            np.testing.assert_allclose(row, native.windows[0].scores, rtol=1e-5, atol=1e-6)
    # The audio matters: different windows score differently.
    assert len({tuple(np.round(row, 4)) for row in probabilities}) > 1


def test_a_batch_answers_each_row_as_if_sent_alone(session) -> None:
    together = np.array(session["infer"]["probabilities"])
    alone = np.array(session["infer_one_by_one"])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)


def test_request_id_version_and_default_outputs(session) -> None:
    assert session["infer"]["id"] == "req-42"
    assert session["infer"]["model_version"] == "1"
    assert session["infer_all_outputs"] == ["embedding", "logits", "probabilities"]


def _top(scores: np.ndarray, count: int, labels: list[str] | None) -> list[list[str]]:
    """Triton's classification strings, written out independently of the server."""
    rows = []
    for row in scores.astype(np.float32):
        best = sorted(range(len(row)), key=lambda i: (-row[i], i))[:count]
        rows.append([
            "%f:%d" % (row[i], i) + (f":{labels[i]}" if labels else "")  # noqa: UP031 (C's %f)
            for i in best
        ])  # fmt: skip
    return rows


def test_class_count_returns_the_top_classes_as_triton_strings(session) -> None:
    result = session["classification"]
    assert result["outputs"] == [
        {"name": "probabilities", "datatype": "BYTES", "shape": [4, 2]},
        {"name": "logits", "datatype": "FP32", "shape": [4, LABELS]},
    ]
    probabilities = np.array(result["probabilities"])
    assert result["top_probabilities"] == _top(probabilities, 2, LABEL_NAMES)
    assert session["classes_alone"] == result["top_probabilities"]
    assert result["top_probabilities"][0][0].count(":") == 2  # "0.651154:3:romantic"
    logits = np.array(result["logits"])
    assert result["top_logits"] == _top(logits, 2, LABEL_NAMES)


def test_class_count_beyond_the_classes_returns_them_all(session) -> None:
    wide = session["classification"]["wide_probabilities"]
    assert len(wide) == 1
    assert len(wide[0]) == LABELS
    assert sorted(int(item.split(":")[1]) for item in wide[0]) == list(range(LABELS))


def test_an_output_without_labels_classifies_without_them(session) -> None:
    embedding = np.array(session["classification"]["embedding"])
    assert session["classification"]["embedding_classes"] == _top(embedding, 3, None)


def test_logits_are_a_v2_output_consistent_with_the_probabilities(session) -> None:
    logits = np.array(session["classification"]["logits"])
    probabilities = np.array(session["classification"]["probabilities"])
    assert logits.shape == probabilities.shape == (4, LABELS)
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax, probabilities, rtol=1e-5, atol=1e-6)


def test_a_batch_over_max_batch_size_is_refused_before_any_work(session) -> None:
    limit = int(session["model_config"]["config"]["max_batch_size"])
    refusal = session["over_max_batch_size"]
    assert refusal["status"] == "StatusCode.INVALID_ARGUMENT"
    assert f"batch-size must be <= {limit}" in refusal["message"]
    assert f"has {limit + 1} rows" in refusal["message"]
    assert session["at_max_batch_size"] == [limit, LABELS]
    before, after = (report["model_stats"][0] for report in session["statistics_around_refusal"])
    # Only the accepted batch of `limit` rows reached the engine.
    assert int(after["inference_count"]) - int(before["inference_count"]) == limit
    assert int(after["inference_stats"]["fail"]["count"]) == (
        int(before["inference_stats"]["fail"].get("count", 0)) + 1
    )


def test_batch_stats_account_for_every_engine_batch(session) -> None:
    for report in (session["statistics_after"], session["statistics_around_refusal"][1]):
        stats = report["model_stats"][0]
        batches = stats["batch_stats"]
        sizes = [int(entry["batch_size"]) for entry in batches]
        assert sizes == sorted(set(sizes))
        assert all(1 <= size <= int(session["model_config"]["config"]["max_batch_size"])
                   for size in sizes)  # fmt: skip
        counts = [int(entry["compute_infer"]["count"]) for entry in batches]
        assert sum(counts) == int(stats["execution_count"])
        assert sum(size * count for size, count in zip(sizes, counts, strict=True)) == int(
            stats["inference_count"]
        )
        total_ns = sum(int(entry["compute_infer"]["ns"]) for entry in batches)
        assert total_ns == pytest.approx(
            int(stats["inference_stats"]["compute_infer"]["ns"]), abs=len(batches)
        )
        assert all(int(entry["compute_infer"]["ns"]) > 0 for entry in batches)
    # The accepted call of max_batch_size rows ran as one batch of that size.
    stats = session["statistics_around_refusal"][1]["model_stats"][0]
    limit = int(session["model_config"]["config"]["max_batch_size"])
    assert limit in [int(entry["batch_size"]) for entry in stats["batch_stats"]]


@pytest.mark.parametrize(
    ("case", "status", "words"),
    [
        ("unknown_model", "StatusCode.NOT_FOUND", "not loaded"),
        ("wrong_window", "StatusCode.INVALID_ARGUMENT", "shape [batch, 8000]"),
        ("no_batch_axis", "StatusCode.INVALID_ARGUMENT", "shape [batch, 8000]"),
        ("fp64", "StatusCode.INVALID_ARGUMENT", "must be FP32"),
        ("unknown_output", "StatusCode.INVALID_ARGUMENT", "unknown outputs"),
        ("negative_class_count", "StatusCode.INVALID_ARGUMENT", "'classification' must be >= 0"),
        ("output_twice", "StatusCode.INVALID_ARGUMENT", "requested more than once"),
    ],
)
def test_errors_get_the_native_statuses_and_say_what_was_wrong(
    session, case, status, words
) -> None:
    assert session["errors"][case]["status"] == status
    assert words in session["errors"][case]["message"]


def test_the_server_keeps_serving_after_bad_requests(session) -> None:
    assert session["ready_after_errors"] is True
