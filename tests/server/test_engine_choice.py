"""Which artifact serves a version (engine = auto|fp32|int8, per model), seen from outside.

Each test builds a version with a real static INT8 copy of its graph listed in model.json
(tests/support/artifacts.py), starts the real server, and observes the choice the way an
operator would: v2 ModelConfig (platform, default_model_filename, instance group), the
`mozart_model_engine_info` metric, and scores of Classify and ModelInfer that match ONNX
Runtime run directly on the chosen file, and not on the other one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_proto.inference import grpc_service_pb2_grpc as v2_grpc
from mozart_proto.inference import model_config_pb2 as v2_config
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.support.artifacts import add_int8_artifact
from tests.support.audio import encode, music_clip
from tests.support.lifecycle import (
    CALL_TIMEOUT_S,
    RATE_HZ,
    WINDOW_SAMPLES,
    rpc_error,
    version_states,
)
from tests.support.models import build_test_model
from tests.support.server import InProcessServer, SpawnedServer, running_server, spawned_server

FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
WINDOWS = np.stack([music_clip(0.5, RATE_HZ, seed=seed) for seed in range(3)])
# The server and a plain ORT session on the same file agree to float rounding; the INT8
# graph's scores differ from FP32's by about 0.1 on these windows.
SAME_GRAPH_ATOL = 1e-5
OTHER_GRAPH_MIN_DIFF = 1e-2


def _scores_of(version_dir: Path, file: str) -> np.ndarray:
    session = ort.InferenceSession(str(version_dir / file), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(["probabilities"], {"waveform": WINDOWS})
    return np.asarray(probabilities)


class Observed:
    """What the server shows of one model: its v2 metadata and config, and its scores."""

    def __init__(self, server: InProcessServer | SpawnedServer, name: str = "tiny") -> None:
        with grpc.insecure_channel(server.address) as channel:
            inference = v2_grpc.GRPCInferenceServiceStub(channel)
            self.config = inference.ModelConfig(
                v2.ModelConfigRequest(name=name), timeout=CALL_TIMEOUT_S
            ).config
            self.platform = inference.ModelMetadata(
                v2.ModelMetadataRequest(name=name), timeout=CALL_TIMEOUT_S
            ).platform
            request = v2.ModelInferRequest(model_name=name)
            request.inputs.add(name="waveform", datatype="FP32", shape=list(WINDOWS.shape))
            request.raw_input_contents.append(WINDOWS.astype("<f4").tobytes())
            response = inference.ModelInfer(request, timeout=CALL_TIMEOUT_S)
            index = [output.name for output in response.outputs].index("probabilities")
            raw = response.raw_output_contents[index]
            self.infer_scores = np.frombuffer(raw, "<f4").reshape(len(WINDOWS), -1)
            # The windows end to end at the model's rate with a hop of one window: Classify
            # cuts exactly these windows again.
            f32 = pb.AUDIO_ENCODING_PCM_F32LE
            classified = pb_grpc.AudioClassifierStub(channel).Classify(
                pb.ClassifyRequest(
                    model=pb.ModelRef(name=name),
                    format=pb.AudioFormat(encoding=f32, sample_rate_hz=RATE_HZ, channels=1),
                    audio=encode(WINDOWS.ravel(), RATE_HZ, f32),
                    hop_ms=WINDOW_SAMPLES * 1000 // RATE_HZ,
                ),
                timeout=CALL_TIMEOUT_S,
            )
            self.classify_scores = np.array([window.scores for window in classified.windows])

    def assert_served_from(self, file: str, scores: np.ndarray, rival: np.ndarray) -> None:
        """The config names `file`, and both APIs give its `scores`, not the `rival` graph's."""
        assert self.config.default_model_filename == file
        assert self.config.parameters["artifact"].string_value == file
        precision = "int8" if file == INT8_FILE else "fp32"
        assert self.config.parameters["precision"].string_value == precision
        assert self.config.platform == self.platform == "onnxruntime_onnx"
        assert self.config.backend == "onnxruntime"
        [group] = self.config.instance_group
        assert group.kind == v2_config.ModelInstanceGroup.KIND_CPU
        assert group.name == f"{self.config.name}_cpu"
        assert np.abs(scores - rival).max() > OTHER_GRAPH_MIN_DIFF  # the test can tell them apart
        for served in (self.infer_scores, self.classify_scores):
            np.testing.assert_allclose(served, scores, atol=SAME_GRAPH_ATOL)


class Graphs:
    """The scores of a version's FP32 and INT8 files, from ONNX Runtime run directly."""

    def __init__(self, version_dir: Path) -> None:
        self.fp32 = _scores_of(version_dir, FP32_FILE)
        self.int8 = _scores_of(version_dir, INT8_FILE)

    def assert_serves(self, observed: Observed, precision: str) -> None:
        """`observed` is served from the file of `precision`, by config and by scores."""
        if precision == "int8":
            observed.assert_served_from(INT8_FILE, self.int8, self.fp32)
        else:
            observed.assert_served_from(FP32_FILE, self.fp32, self.int8)


def engine_info(server: InProcessServer | SpawnedServer) -> list[dict[str, str]]:
    """The label sets of every mozart_model_engine_info sample, by model and version."""
    found = []
    for family in text_string_to_metric_families(server.scrape()):
        for sample in family.samples:
            if sample.name == "mozart_model_engine_info":
                assert sample.value == 1
                found.append(dict(sample.labels))
    return sorted(found, key=lambda labels: (labels["model"], labels["version"]))


def _info(name: str, precision: str, version: str = "1") -> dict[str, str]:
    file = INT8_FILE if precision == "int8" else FP32_FILE
    return {"model": name, "version": version, "kind": "onnxruntime", "precision": precision,
            "artifact": file, "device": "cpu"}  # fmt: skip


def _v1_stub(channel: grpc.Channel) -> pb_grpc.AudioClassifierStub:
    return pb_grpc.AudioClassifierStub(channel)


@pytest.fixture
def version_dir(tmp_path: Path) -> Path:
    """models/tiny/1 with an INT8 artifact recorded at 1.5 x FP32's best throughput."""
    built = build_test_model(tmp_path / "models", "tiny", "1")
    add_int8_artifact(built, throughput_ratio=1.5)
    return built


@pytest.mark.parametrize(
    ("settings", "precision"),
    [({}, "int8"), ({"engine": "int8"}, "int8"), ({"engine": "fp32"}, "fp32")],
    ids=["auto", "int8", "fp32"],
)
def test_the_engine_setting_chooses_the_file_that_serves(
    version_dir: Path, settings: dict[str, str], precision: str
) -> None:
    with running_server(version_dir.parents[1], **settings) as server:
        Graphs(version_dir).assert_serves(Observed(server), precision)
        assert engine_info(server) == [_info("tiny", precision)]


def test_model_engines_override_the_global_engine_per_model(tmp_path: Path) -> None:
    models = tmp_path / "models"
    tiny = build_test_model(models, "tiny", "1")
    other = build_test_model(models, "other", "1", seed=7)
    for built in (tiny, other):
        add_int8_artifact(built, throughput_ratio=1.5)
    with running_server(models, engine="fp32", model_engines="other=int8") as server:
        Graphs(tiny).assert_serves(Observed(server, "tiny"), "fp32")
        Graphs(other).assert_serves(Observed(server, "other"), "int8")
        assert engine_info(server) == [_info("other", "int8"), _info("tiny", "fp32")]


def test_engine_int8_without_an_int8_artifact_fails_the_load_and_says_to_run_mozart_optimize(
    tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    build_test_model(models, "tiny", "1")
    settings = {"engine": "int8", "model_control_mode": "explicit", "startup_models": ""}
    with (
        running_server(models, **settings) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = _v1_stub(channel)
        error = rpc_error(
            lambda: stub.LoadModel(pb.LoadModelRequest(name="tiny"), timeout=CALL_TIMEOUT_S)
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "engine=int8" in str(error.details())
        assert "run mozart optimize" in str(error.details())
        state, reason = version_states(stub, "tiny")["1"]
        assert state == "UNAVAILABLE"
        assert "run mozart optimize" in reason
        assert engine_info(server) == []


def _remove(path: Path) -> None:
    path.unlink()


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("breakage", "words"),
    [(_remove, "listed in model.json but missing"), (_flip_a_byte, "sha256 differs")],
    ids=["missing", "tampered"],
)
def test_an_artifact_missing_or_not_the_one_admitted_is_passed_over_by_auto_and_refused_by_int8(
    version_dir: Path, breakage: Callable[[Path], None], words: str
) -> None:
    graphs = Graphs(version_dir)
    breakage(version_dir / INT8_FILE)
    models = version_dir.parents[1]
    with running_server(models) as server:
        graphs.assert_serves(Observed(server), "fp32")
        assert engine_info(server) == [_info("tiny", "fp32")]
    with (
        running_server(models, engine="int8") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        state, reason = version_states(_v1_stub(channel), "tiny")["1"]
        assert state == "UNAVAILABLE"
        assert INT8_FILE in reason
        assert words in reason
        assert engine_info(server) == []


def test_auto_passes_over_an_artifact_measured_on_another_provider(tmp_path: Path) -> None:
    built = build_test_model(tmp_path / "models", "tiny", "1")
    add_int8_artifact(built, throughput_ratio=3.0, provider="CUDAExecutionProvider")
    with running_server(built.parents[1]) as server:
        Graphs(built).assert_serves(Observed(server), "fp32")
    with (
        running_server(built.parents[1], engine="int8") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        state, reason = version_states(_v1_stub(channel), "tiny")["1"]
        assert state == "UNAVAILABLE"
        assert "measured on CUDAExecutionProvider, this server runs CPUExecutionProvider" in reason


def test_auto_keeps_model_onnx_when_the_artifact_is_slower_and_int8_still_asks_for_it(
    tmp_path: Path,
) -> None:
    built = build_test_model(tmp_path / "models", "tiny", "1")
    add_int8_artifact(built, throughput_ratio=0.8)
    graphs = Graphs(built)
    with running_server(built.parents[1]) as server:
        graphs.assert_serves(Observed(server), "fp32")
    with running_server(built.parents[1], engine="int8") as server:
        graphs.assert_serves(Observed(server), "int8")


def test_engine_info_follows_what_serves_through_a_reload_and_an_unload(tmp_path: Path) -> None:
    built = build_test_model(tmp_path / "models", "tiny", "1")
    with (
        running_server(built.parents[1], model_control_mode="explicit") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = _v1_stub(channel)
        assert engine_info(server) == [_info("tiny", "fp32")]
        add_int8_artifact(built, throughput_ratio=1.5)  # as `mozart optimize` would
        stub.LoadModel(pb.LoadModelRequest(name="tiny"), timeout=CALL_TIMEOUT_S)
        assert engine_info(server) == [_info("tiny", "int8")]  # the FP32 copy's series is gone
        Graphs(built).assert_serves(Observed(server), "int8")
        stub.UnloadModel(pb.UnloadModelRequest(name="tiny"), timeout=CALL_TIMEOUT_S)
        assert engine_info(server) == []
        assert server.metric("mozart_model_loaded", model="tiny", version="1") == 0


def test_flags_choose_per_model_and_the_log_says_what_serves(version_dir: Path) -> None:
    flags = ("--engine", "fp32", "--model-engines", "tiny=int8")
    with spawned_server(version_dir.parents[1], *flags) as server:
        chosen = [entry for entry in server.logs if entry.get("message") == "engine chosen"]
        assert [(entry["model"], entry["engine_choice"], entry["artifact"], entry["precision"])
                for entry in chosen] == [("tiny", "int8", INT8_FILE, "int8")]  # fmt: skip
        Graphs(version_dir).assert_serves(Observed(server), "int8")
        assert engine_info(server) == [_info("tiny", "int8")]
