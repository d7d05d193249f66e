"""A seeded random run of model-control operations under traffic, in explicit mode.

200 operations (LoadModel, LoadModel(reload=True), UnloadModel, and a new version
published on disk followed by LoadModel) on two models, while threads keep
calling Classify, short StreamClassify streams and v2 ModelInfer. Every control
call must answer what its documentation says, every traffic call OK or a
documented status (never INTERNAL or UNKNOWN), every answer must be whole and
consistent, and at the end nothing may be left open: engines, batchers, leases,
streams and their tasks all match what serves.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import grpc
import numpy as np

from mozart_proto.inference import grpc_service_pb2_grpc as v2_grpc
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.server.streams import audio_messages, config_message
from tests.support.audio import encode, music_clip
from tests.support.lifecycle import (
    CALL_TIMEOUT_S,
    RATE_HZ,
    S16,
    clip_request,
    infer_request,
    publish_version,
    status_code,
    version_states,
    wait_for,
)
from tests.support.models import DEFAULT_LABELS, build_test_model
from tests.support.server import running_server

SEED = 20_240_611
OPERATIONS = 200
TRAFFIC_THREADS = 3
LABELS = {"tiny": DEFAULT_LABELS, "other": ("blues", "rock", "pop")}
MODELS = tuple(LABELS)
OPERATION_KINDS = ("load", "reload", "unload", "publish")
OPERATION_WEIGHTS = (3, 3, 2, 3)
STREAM_WINDOWS = 3  # 1 s of audio, 0.5 s windows every 0.25 s
INFER_ROWS = 2
# What traffic may meet while models come and go: the model (or every model) is not loaded.
TRAFFIC_STATUSES = {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE}
DOCUMENTED = TRAFFIC_STATUSES | {grpc.StatusCode.FAILED_PRECONDITION}
LEAK_GAUGES = ("mozart_version_leases", "mozart_active_streams", "mozart_stream_tasks",
               "mozart_queue_depth", "mozart_batches_in_flight")  # fmt: skip


class _Traffic(threading.Thread):
    """Random calls on random models until stopped; counts statuses, notes bad answers."""

    def __init__(self, address: str, seed: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self._address = address
        self._random = random.Random(seed)
        self._stopped = stop
        self._stream_audio = encode(music_clip(1.0, RATE_HZ, seed=seed), RATE_HZ, S16)
        self._clips = {name: clip_request(name, seconds=0.5, seed=seed) for name in MODELS}
        self._infers = {name: infer_request(name, rows=INFER_ROWS, seed=seed) for name in MODELS}
        self.counts: Counter[tuple[str, str]] = Counter()
        self.seen: set[tuple[str, str]] = set()
        self.problems: list[str] = []

    def run(self) -> None:
        with grpc.insecure_channel(self._address) as channel:
            stub = pb_grpc.AudioClassifierStub(channel)
            v2_stub = v2_grpc.GRPCInferenceServiceStub(channel)
            calls: dict[str, Callable[[str], str]] = {
                "Classify": lambda name: self._classify(stub, name),
                "StreamClassify": lambda name: self._stream(stub, name),
                "ModelInfer": lambda name: self._infer(v2_stub, name),
            }
            while not self._stopped.is_set():
                method = self._random.choice(sorted(calls))
                name = self._random.choice(MODELS)
                try:
                    version = calls[method](name)
                    code = grpc.StatusCode.OK
                    self.seen.add((name, version))
                except grpc.RpcError as error:
                    code = error.code()
                    if code not in TRAFFIC_STATUSES:
                        self.problems.append(f"{method} {name}: {code.name} {error.details()}")
                self.counts[(method, code.name)] += 1

    def _check(self, condition: bool, what: str) -> None:
        if not condition:
            self.problems.append(what)

    def _classify(self, stub: pb_grpc.AudioClassifierStub, name: str) -> str:
        response = stub.Classify(self._clips[name], timeout=CALL_TIMEOUT_S)
        self._check(list(response.labels) == list(LABELS[name]), f"Classify {name}: labels")
        self._check(len(response.windows) == 1, f"Classify {name}: {len(response.windows)} windows")
        return str(response.model_version)

    def _stream(self, stub: pb_grpc.AudioClassifierStub, name: str) -> str:
        messages = [config_message(name=name, hop_ms=250),
                    *audio_messages(self._stream_audio, [8_000])]  # fmt: skip
        responses = list(stub.StreamClassify(iter(messages), timeout=CALL_TIMEOUT_S))
        windows = [r.window for r in responses if r.WhichOneof("result") == "window"]
        versions = {window.model_version for window in windows}
        self._check(responses[-1].is_final, f"StreamClassify {name}: no summary")
        self._check(
            responses[-1].summary.window_count == len(windows) == STREAM_WINDOWS,
            f"StreamClassify {name}: {len(windows)} windows",
        )
        self._check(len(versions) == 1, f"StreamClassify {name}: versions {versions}")
        return versions.pop() if versions else ""

    def _infer(self, stub: v2_grpc.GRPCInferenceServiceStub, name: str) -> str:
        response = stub.ModelInfer(self._infers[name], timeout=CALL_TIMEOUT_S)
        index = [output.name for output in response.outputs].index("probabilities")
        shape = tuple(response.outputs[index].shape)
        self._check(shape == (INFER_ROWS, len(LABELS[name])), f"ModelInfer {name}: {shape}")
        scores = np.frombuffer(response.raw_output_contents[index], "<f4").reshape(shape)
        self._check(bool(np.allclose(scores.sum(axis=1), 1.0, atol=1e-4)), "ModelInfer: sums")
        return str(response.model_version)


def _ready_versions(stub: pb_grpc.AudioClassifierStub, name: str) -> set[str]:
    return {version for version, (state, _) in version_states(stub, name).items()
            if state == "READY"}  # fmt: skip


def test_random_loads_reloads_unloads_and_swaps_under_traffic_leave_nothing_behind(
    tmp_path: Path,
) -> None:
    repository = tmp_path / "models"
    build_test_model(repository, "tiny", "1", seed=0, labels=LABELS["tiny"])
    build_test_model(repository, "tiny", "2", seed=1, labels=LABELS["tiny"])
    build_test_model(repository, "other", "1", seed=2, labels=LABELS["other"])
    newest = {"tiny": 2, "other": 1}
    loaded = dict.fromkeys(MODELS, True)
    rng = random.Random(SEED)
    operations: Counter[tuple[str, str]] = Counter()
    started = time.monotonic()
    with (
        running_server(repository, model_control_mode="explicit", version_policy="latest",
                       max_queue_delay_us=500) as server,
        grpc.insecure_channel(server.address) as channel,
    ):  # fmt: skip
        stub = pb_grpc.AudioClassifierStub(channel)
        stop = threading.Event()
        traffic = [_Traffic(server.address, SEED + i, stop) for i in range(TRAFFIC_THREADS)]
        for thread in traffic:
            thread.start()
        try:
            for step in range(OPERATIONS):
                # Unloads are rarer, so that traffic mostly finds something serving.
                operation = rng.choices(OPERATION_KINDS, OPERATION_WEIGHTS)[0]
                name = rng.choice(MODELS)
                if operation == "publish":
                    newest[name] += 1
                    publish_version(repository, name, str(newest[name]),
                                    seed=rng.randrange(10_000), labels=LABELS[name])  # fmt: skip
                if operation == "unload":
                    code = status_code(partial(stub.UnloadModel, pb.UnloadModelRequest(name=name),
                                            timeout=CALL_TIMEOUT_S))  # fmt: skip
                    expected = grpc.StatusCode.OK if loaded[name] else grpc.StatusCode.NOT_FOUND
                    loaded[name] = False
                else:
                    request = pb.LoadModelRequest(name=name, reload=operation == "reload")
                    code = status_code(partial(stub.LoadModel, request, timeout=CALL_TIMEOUT_S))
                    expected = grpc.StatusCode.OK
                    loaded[name] = True
                operations[(operation, code.name)] += 1
                assert code == expected, (step, operation, name)
                serving = {str(newest[name])} if loaded[name] else set()
                assert _ready_versions(stub, name) == serving, (step, operation, name)
                time.sleep(rng.uniform(0, 0.02))
        finally:
            stop.set()
            for thread in traffic:
                thread.join(60)

        # A known end state: both models loaded, their newest versions serving.
        for name in MODELS:
            stub.LoadModel(pb.LoadModelRequest(name=name), timeout=CALL_TIMEOUT_S)
        assert wait_for(lambda: server.metric("mozart_engines_open") == len(MODELS))
        assert wait_for(lambda: server.metric("mozart_batchers_open") == len(MODELS))
        for gauge in LEAK_GAUGES:
            assert wait_for(lambda gauge=gauge: server.metric(gauge) == 0), gauge  # type: ignore[misc]
        assert server.metric("mozart_model_loaded") == len(MODELS)
        for name in MODELS:
            assert server.metric("mozart_model_loaded", model=name, version=str(newest[name])) == 1
        assert server.metric("mozart_model_load_failures_total") == 0
        assert server.metric("mozart_requests_total", code="INTERNAL") == 0
        assert server.metric("mozart_requests_total", code="UNKNOWN") == 0

    calls: Counter[tuple[str, str]] = Counter()
    for thread in traffic:
        calls.update(thread.counts)
    problems = [problem for thread in traffic for problem in thread.problems]
    assert problems == []
    assert {grpc.StatusCode[code] for _, code in calls} <= DOCUMENTED
    seen = {pair for thread in traffic for pair in thread.seen}
    assert all(int(version) <= newest[name] for name, version in seen)
    # The traffic did meet changes: answers from more than the start-up versions.
    assert len(seen) > len(MODELS)
    ok = sum(count for (_, code), count in calls.items() if code == "OK")
    assert ok > OPERATIONS
    print(f"\nlifecycle stress: {OPERATIONS} operations in {time.monotonic() - started:.1f} s "
          f"(seed {SEED}); versions published up to {newest}")  # fmt: skip
    print("operations by result:", dict(sorted(operations.items())))
    print("calls by status:", dict(sorted(calls.items())))
