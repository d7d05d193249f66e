"""Guardrails on a real server: a candidate that fails or is slow is rolled back by itself,
and a shadow candidate's answers are measured but never returned.

The candidates are real ONNX graphs (tests.support.rollout): one scores NaN for loud
windows (the server's non-finite guard answers those INTERNAL), one does 120 extra
matrix products per window. Calls go one after another, each recorded with the
version that answered or its error, so the counts prove what happened: which calls
failed and why, when the weight went to 0, and that every call after went to the
baseline. The seconds printed are measured, never asserted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.server.streams import audio_messages, config_message
from tests.support.lifecycle import wait_for
from tests.support.models import build_test_model
from tests.support.rollout import (
    ROUTING_KEY,
    build_candidate,
    classify,
    clip,
    rollout,
    set_rollout,
)
from tests.support.server import InProcessServer, running_server

NON_FINITE = "non-finite scores"
LOUD = clip(0.5, seed=7, peak=0.95)  # the NaN candidate fails on this
QUIET = clip(0.5, seed=7, peak=0.3)  # and answers this
MAX_CALLS = 2_000


@dataclass(frozen=True)
class _Outcome:
    version: str  # "" when the call failed
    code: grpc.StatusCode
    details: str
    wall_s: float


def _call(stub: pb_grpc.AudioClassifierStub, audio: bytes) -> _Outcome:
    try:
        response = classify(stub, audio)
    except grpc.RpcError as error:
        return _Outcome("", error.code(), str(error.details()), time.time())
    return _Outcome(response.model_version, grpc.StatusCode.OK, "", time.time())


def _until_rolled_back(
    stub: pb_grpc.AudioClassifierStub, audio: bytes
) -> tuple[list[_Outcome], pb.RolloutStatus]:
    """Calls until GetRollout says ROLLED_BACK; returns every outcome and that status."""
    outcomes: list[_Outcome] = []
    for _ in range(MAX_CALLS):
        outcomes.append(_call(stub, audio))
        status = rollout(stub)
        if status.state == pb.ROLLOUT_STATE_ROLLED_BACK:
            return outcomes, status
    raise AssertionError(f"no rollback after {MAX_CALLS} calls: {rollout(stub)}")


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("guardrail-models")
    build_test_model(repository, version="1", seed=0)
    build_candidate(repository, "tiny", "2", nan_above=0.9)
    build_candidate(repository, "tiny", "3", slow_matmuls=120)
    build_test_model(repository, version="4", seed=1)  # agrees with 1 on most windows, not all
    build_test_model(repository, version="5", seed=0)  # the same graph as 1
    return repository


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[InProcessServer]:
    with running_server(repository, latest_versions=1, max_queue_delay_us=0) as running:
        yield running


@pytest.fixture
def stub(server: InProcessServer) -> Iterator[pb_grpc.AudioClassifierStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.AudioClassifierStub(channel)
        channel.close()


def test_a_candidate_that_returns_errors_is_rolled_back_and_no_call_fails_for_it(
    stub: pb_grpc.AudioClassifierStub, server: InProcessServer
) -> None:
    rails = pb.RolloutGuardrails(max_error_ratio=0.2, min_samples=5, window_size=20)
    set_rollout(stub, weights={"1": 50, "2": 50}, guardrails=rails)
    before, status = _until_rolled_back(stub, LOUD)
    after = [_call(stub, LOUD) for _ in range(200)]

    failed = [o for o in before if o.code != grpc.StatusCode.OK]
    # Every failure is the candidate's own error, INTERNAL from the non-finite guard...
    assert all(o.code == grpc.StatusCode.INTERNAL and NON_FINITE in o.details for o in failed)
    # ...there is one for each outcome the guardrail counted against it, and no more...
    figures = status.last_event.figures
    assert status.last_event.kind == "rolled_back"
    assert status.last_event.version == "2"
    assert len(failed) == figures["errors"] == figures["samples"] == rails.min_samples
    # ...the baseline answered every other call, and after the rollback all of them.
    assert {o.version for o in before if o.code == grpc.StatusCode.OK} <= {"1"}
    assert all(o.code == grpc.StatusCode.OK and o.version == "1" for o in after)
    assert dict(status.weights) == {"1": 100, "2": 0}
    assert server.metric("mozart_rollout_rollbacks_total", model="tiny", version="2") == 1
    assert server.metric("mozart_rollout_weight", model="tiny", version="2") == 0
    seconds = status.last_event.unix_ms / 1000 - failed[0].wall_s
    print(
        f"error rollback: {len(failed)} bad answers (first to weight 0), {len(before)} calls "
        f"before it, {seconds:.3f} s from the first bad answer to weight 0; "
        f"reason: {status.last_event.reason}"
    )
    # The rolled-back version still serves calls that name it, and fails only on some
    # inputs: quiet audio scores finite on it.
    assert classify(stub, QUIET, version="2").model_version == "2"


def test_a_slow_candidate_is_rolled_back_by_the_p99_ratio(
    stub: pb_grpc.AudioClassifierStub,
) -> None:
    rails = pb.RolloutGuardrails(
        max_error_ratio=0.5, max_p99_latency_ratio=3.0, min_samples=5, window_size=20
    )
    set_rollout(stub, weights={"1": 50, "3": 50}, guardrails=rails)
    before, status = _until_rolled_back(stub, QUIET)
    after = [_call(stub, QUIET) for _ in range(100)]

    assert all(o.code == grpc.StatusCode.OK for o in before + after)
    assert status.last_event.version == "3"
    figures = status.last_event.figures
    assert figures["p99_latency_ratio"] > rails.max_p99_latency_ratio
    assert figures["samples"] >= rails.min_samples
    assert figures["baseline_samples"] >= rails.min_samples
    assert {o.version for o in after} == {"1"}
    slow = [o for o in before if o.version == "3"]
    print(
        f"latency rollback: {len(slow)} slow answers, {len(before)} calls before it, "
        f"{status.last_event.unix_ms / 1000 - slow[0].wall_s:.3f} s from the first slow answer "
        f"to weight 0; reason: {status.last_event.reason}"
    )


def test_a_shadow_is_never_returned_and_its_agreement_is_measured(
    stub: pb_grpc.AudioClassifierStub, server: InProcessServer
) -> None:
    set_rollout(stub, weights={"1": 100}, shadow="4")
    clips = [clip(1.0, seed=seed) for seed in range(30)]
    answers = [classify(stub, audio) for audio in clips]
    assert {answer.model_version for answer in answers} == {"1"}
    assert all(w.model_version == "1" for answer in answers for w in answer.windows)
    windows = sum(len(answer.windows) for answer in answers)
    assert wait_for(
        lambda: (
            next(v for v in rollout(stub).versions if v.version == "4").agreement_samples == windows
        )
    )
    measured = next(v for v in rollout(stub).versions if v.version == "4")
    # What the shadow would have answered, asked directly: agreement is the share of
    # windows whose top-1 label is the same.
    agreed = sum(
        theirs.top_k[0].label == ours.top_k[0].label
        for audio, answer in zip(clips, answers, strict=True)
        for ours, theirs in zip(
            answer.windows, classify(stub, audio, version="4").windows, strict=True
        )
    )
    assert measured.agreement == pytest.approx(agreed / windows)
    assert 0 < agreed < windows  # seeds 0 and 1 agree on about 3 windows in 4
    agree = server.metric("mozart_rollout_shadow_windows_total", version="4", result="agree")
    assert agree == agreed
    print(f"shadow agreement: {agreed}/{windows} windows = {measured.agreement:.3f}")


def test_a_shadow_below_min_agreement_is_rolled_back(stub: pb_grpc.AudioClassifierStub) -> None:
    rails = pb.RolloutGuardrails(min_agreement=0.999, min_samples=5, window_size=100)
    set_rollout(stub, weights={"1": 100}, shadow="4", guardrails=rails)
    assert wait_for(
        lambda: (
            classify(stub, clip(1.0, seed=int(time.monotonic_ns()) % 1000)).model_version == "1"
            and rollout(stub).state == pb.ROLLOUT_STATE_ROLLED_BACK
        ),
        timeout_s=60,
        every_s=0.0,
    )
    status = rollout(stub)
    assert status.shadow == ""
    assert status.last_event.figures["agreement"] < rails.min_agreement
    # A shadow that agrees with the baseline (the same graph) holds.
    set_rollout(stub, weights={"1": 100}, shadow="5", guardrails=rails)
    for seed in range(20):
        assert classify(stub, clip(1.0, seed=seed)).model_version == "1"
    assert wait_for(
        lambda: next(v for v in rollout(stub).versions if v.version == "5").agreement_samples == 60
    )
    held = rollout(stub)
    assert held.state == pb.ROLLOUT_STATE_ACTIVE
    assert next(v for v in held.versions if v.version == "5").agreement == 1.0


def test_a_stream_on_the_baseline_feeds_the_shadow_window_by_window(
    stub: pb_grpc.AudioClassifierStub,
) -> None:
    set_rollout(stub, weights={"1": 100}, shadow="5")
    messages = [config_message(hop_ms=250), *audio_messages(clip(3.0, seed=9), [4_000])]
    windows = [
        r.window for r in stub.StreamClassify(iter(messages), timeout=60)
        if r.WhichOneof("result") == "window"
    ]  # fmt: skip
    assert windows
    assert {w.model_version for w in windows} == {"1"}
    assert wait_for(
        lambda: (
            next(v for v in rollout(stub).versions if v.version == "5").agreement_samples
            == len(windows)
        )
    )
    # The same graph as the baseline: every window agrees.
    assert next(v for v in rollout(stub).versions if v.version == "5").agreement == 1.0


class _Caller(threading.Thread):
    """Classify calls back to back; each remembers whether it began after the rollback."""

    def __init__(self, stub: pb_grpc.AudioClassifierStub, rolled_back: threading.Event) -> None:
        super().__init__(daemon=True)
        self._stub = stub
        self._rolled_back = rolled_back
        self.outcomes: list[tuple[bool, _Outcome]] = []

    def run(self) -> None:
        after = 0
        while after < 50:
            began_after = self._rolled_back.is_set()
            self.outcomes.append((began_after, _call(self._stub, LOUD)))
            after += began_after


def test_concurrent_callers_see_only_the_candidates_own_errors_and_none_after_rollback(
    stub: pb_grpc.AudioClassifierStub,
) -> None:
    rails = pb.RolloutGuardrails(max_error_ratio=0.2, min_samples=5, window_size=20)
    set_rollout(stub, weights={"1": 50, "2": 50}, guardrails=rails)
    rolled_back = threading.Event()
    callers = [_Caller(stub, rolled_back) for _ in range(8)]
    for caller in callers:
        caller.start()
    assert wait_for(lambda: rollout(stub).state == pb.ROLLOUT_STATE_ROLLED_BACK, timeout_s=60)
    rolled_back.set()
    for caller in callers:
        caller.join(timeout=60)
        assert not caller.is_alive()
    outcomes = [entry for caller in callers for entry in caller.outcomes]
    before = [o for began_after, o in outcomes if not began_after]
    after = [o for began_after, o in outcomes if began_after]
    # Before: an answer from the baseline, or the candidate's own INTERNAL error.
    assert all(
        (o.code == grpc.StatusCode.OK and o.version == "1")
        or (o.code == grpc.StatusCode.INTERNAL and NON_FINITE in o.details)
        for o in before
    )
    # After: every call answered by the baseline, none failed.
    assert len(after) == 8 * 50
    assert all(o.code == grpc.StatusCode.OK and o.version == "1" for o in after)
    failed = sum(o.code != grpc.StatusCode.OK for o in before)
    print(f"concurrent rollback: {failed} candidate errors among {len(before)} calls before it")


def _paced(audio: bytes, first_window: threading.Event) -> Iterator[pb.StreamClassifyRequest]:
    yield config_message(hop_ms=250)
    for index, message in enumerate(audio_messages(audio, [4_000])):
        yield message
        if index == 4:  # wait until the rollback has happened, mid-stream
            first_window.wait(60)


def test_a_stream_open_on_the_candidate_finishes_on_it_after_the_rollback(
    stub: pb_grpc.AudioClassifierStub,
) -> None:
    rails = pb.RolloutGuardrails(max_error_ratio=0.2, min_samples=5, window_size=50)
    set_rollout(stub, weights={"1": 50, "2": 50}, guardrails=rails)
    key = next(
        f"k{n}" for n in range(200) if classify(stub, QUIET, key=f"k{n}").model_version == "2"
    )
    rolled_back = threading.Event()
    responses: list[pb.StreamClassifyResponse] = []

    def run_stream() -> None:
        call = stub.StreamClassify(
            _paced(clip(3.0, seed=8, peak=0.3), rolled_back),
            metadata=((ROUTING_KEY, key),),
            timeout=60,
        )
        for response in call:
            responses.append(response)
            first_window.set()

    first_window = threading.Event()
    stream = threading.Thread(target=run_stream, daemon=True)
    stream.start()
    assert first_window.wait(60)  # the stream has resolved its version
    # Calls that name the candidate count against it: loud ones fail until it is rolled back.
    while rollout(stub).state != pb.ROLLOUT_STATE_ROLLED_BACK:
        assert _call_version(stub, LOUD, "2") == grpc.StatusCode.INTERNAL
    rolled_back.set()
    stream.join(60)
    windows = [r.window for r in responses if r.WhichOneof("result") == "window"]
    assert responses[-1].is_final  # the stream ended with its summary, not an error
    assert len(windows) == 11  # 3 s at a 250 ms hop, 0.5 s windows
    assert {w.model_version for w in windows} == {"2"}
    # A new stream with the same key now goes to the baseline.
    assert classify(stub, QUIET, key=key).model_version == "1"


def _call_version(stub: pb_grpc.AudioClassifierStub, audio: bytes, version: str) -> grpc.StatusCode:
    try:
        classify(stub, audio, version=version)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK
