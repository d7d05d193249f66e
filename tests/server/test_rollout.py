"""Rollouts on a real server: traffic split, stickiness, explicit versions, the API's errors,
rollout.toml read with the repository, and promotion.

Every test starts a real server on 127.0.0.1:0 and talks to it over a real channel.
Nothing here asserts a duration: behaviour is proved by counts and states.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mozart_proto.inference import grpc_service_pb2_grpc as v2_grpc
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.server.streams import audio_messages, config_message
from tests.support.lifecycle import infer_request, rpc_error, wait_for
from tests.support.models import build_test_model
from tests.support.rollout import ROUTING_KEY, classify, clip, rollout, set_rollout
from tests.support.server import InProcessServer, running_server

CALLS = 1_000
CANDIDATE_SHARE = 0.2
# Binomial: the candidate's count has mean n*p and sigma sqrt(n*p*(1-p)) = 12.6 at
# n=1000, p=0.2. 4.5 sigma on either side fails a correct server about once in 1.5e5 runs.
SIGMAS = 4.5
NO_RAILS = pb.RolloutGuardrails(min_samples=1_000, window_size=1_000)  # never judges here


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("rollout-models")
    build_test_model(repository, version="1", seed=0)
    build_test_model(repository, version="2", seed=2)
    return repository


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[InProcessServer]:
    # The version policy serves only the newest; the rollout must load version 1 too.
    with running_server(repository, latest_versions=1) as running:
        yield running


@pytest.fixture
def stub(server: InProcessServer) -> Iterator[pb_grpc.AudioClassifierStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.AudioClassifierStub(channel)


def _clear(stub: pb_grpc.AudioClassifierStub) -> None:
    stub.SetRollout(pb.SetRolloutRequest(name="tiny", clear=True), timeout=30)


def _stream_versions(stub: pb_grpc.AudioClassifierStub, key: str) -> set[str]:
    messages = [config_message(hop_ms=250), *audio_messages(clip(2.0, seed=5), [4_000])]
    versions = set()
    for response in stub.StreamClassify(iter(messages), metadata=((ROUTING_KEY, key),), timeout=60):
        if response.WhichOneof("result") == "window":
            versions.add(response.window.model_version)
    return versions


def test_unary_calls_split_by_weight_and_each_result_names_its_version(
    stub: pb_grpc.AudioClassifierStub,
) -> None:
    status = set_rollout(stub, weights={"1": 80, "2": 20}, guardrails=NO_RAILS)
    assert status.state == pb.ROLLOUT_STATE_ACTIVE
    assert dict(status.weights) == {"1": 80, "2": 20}
    assert status.baseline == "1"
    audio = clip(0.5, seed=1)
    truth = {v: classify(stub, audio, version=v).summary.scores for v in ("1", "2")}
    assert truth["1"] != truth["2"]  # the versions score differently, so answers show who
    counts: Counter[str] = Counter()
    for _ in range(CALLS):
        response = classify(stub, audio)
        counts[response.model_version] += 1
        assert response.summary.scores == truth[response.model_version]
        assert all(w.model_version == response.model_version for w in response.windows)
    mean = CALLS * CANDIDATE_SHARE
    tolerance = SIGMAS * math.sqrt(CALLS * CANDIDATE_SHARE * (1 - CANDIDATE_SHARE))
    print(
        f"split of {CALLS} calls at 80/20: {dict(counts)} (candidate {mean:.0f} +- {tolerance:.1f})"
    )
    assert set(counts) == {"1", "2"}
    assert abs(counts["2"] - mean) <= tolerance, counts
    _clear(stub)


def test_a_routing_key_always_lands_on_one_version_and_streams_stay_on_one(
    stub: pb_grpc.AudioClassifierStub,
) -> None:
    set_rollout(stub, weights={"1": 50, "2": 50}, guardrails=NO_RAILS)
    audio = clip(0.5, seed=2)
    landed: dict[str, set[str]] = {}
    for key in (f"caller-{n}" for n in range(40)):
        landed[key] = {classify(stub, audio, key=key).model_version for _ in range(5)}
    assert all(len(versions) == 1 for versions in landed.values()), landed
    seen = {next(iter(versions)) for versions in landed.values()}
    assert seen == {"1", "2"}  # 40 keys at 50/50 all on one side: 2 * 0.5**40
    streams = {key: _stream_versions(stub, key) for key in list(landed)[:12]}
    # Each stream's windows all come from one version, the one its key maps to.
    assert all(streams[key] == landed[key] for key in streams), (streams, landed)
    _clear(stub)


def test_a_call_that_names_a_version_gets_it_whatever_the_weights(
    stub: pb_grpc.AudioClassifierStub,
) -> None:
    set_rollout(stub, weights={"1": 100, "2": 0}, guardrails=NO_RAILS)
    audio = clip(0.5, seed=3)
    assert {classify(stub, audio).model_version for _ in range(20)} == {"1"}
    assert {classify(stub, audio, version="2").model_version for _ in range(5)} == {"2"}
    _clear(stub)
    # No rollout: unversioned calls go to the newest serving version again.
    assert classify(stub, audio).model_version == "2"


def test_bad_rollouts_are_refused_with_a_clear_message(
    stub: pb_grpc.AudioClassifierStub,
) -> None:
    error = rpc_error(lambda: set_rollout(stub, weights={"1": 80, "2": 10}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sum to 100" in str(error.details())
    assert "90" in str(error.details())
    error = rpc_error(lambda: set_rollout(stub, weights={"1": 50, "7": 50}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "['7']" in str(error.details())
    assert "does not have" in str(error.details())
    error = rpc_error(lambda: set_rollout(stub, "nosuch", weights={"1": 100}))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = rpc_error(lambda: rollout(stub, "nosuch"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert rollout(stub).state == pb.ROLLOUT_STATE_NONE
    # The server serves on.
    assert classify(stub, clip()).model_version == "2"


def test_auto_promotion_moves_the_candidate_up_in_steps(
    stub: pb_grpc.AudioClassifierStub, server: InProcessServer
) -> None:
    rails = pb.RolloutGuardrails(max_error_ratio=0.5, min_samples=5, window_size=20)
    set_rollout(stub, weights={"1": 90, "2": 10}, guardrails=rails, auto_promote=True)
    audio = clip(0.5, seed=4)
    assert wait_for(
        lambda: (
            classify(stub, audio) is not None and rollout(stub).state == pb.ROLLOUT_STATE_PROMOTED
        ),
        timeout_s=60,
        every_s=0.0,
    )
    status = rollout(stub)
    assert dict(status.weights) == {"1": 0, "2": 100}
    assert status.last_event.kind == "promoted"
    assert server.metric("mozart_rollout_promotions_total", model="tiny", version="2") == 2
    assert {classify(stub, audio).model_version for _ in range(20)} == {"2"}
    _clear(stub)


def test_rollout_toml_is_read_with_the_repository(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    build_test_model(repository, version="1", seed=0)
    build_test_model(repository, version="2", seed=2)
    policy_file = repository / "tiny" / "rollout.toml"
    policy_file.write_text('weights = {"1" = 100, "2" = 0}\n')
    with (
        running_server(
            repository, latest_versions=1, model_control_mode="poll", repository_poll_s=0.1
        ) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        status = rollout(stub)
        assert status.source == "file"
        assert dict(status.weights) == {"1": 100, "2": 0}
        assert classify(stub, clip()).model_version == "1"
        policy_file.write_text('weights = {"1" = 0, "2" = 100}\n')
        assert wait_for(lambda: dict(rollout(stub).weights) == {"1": 0, "2": 100})
        assert classify(stub, clip()).model_version == "2"
        policy_file.write_text('weights = {"1" = 40}\n')  # refused: the live rollout stays
        assert wait_for(lambda: rollout(stub).last_event.kind == "file_rejected")
        assert "sum to 100" in rollout(stub).last_event.reason
        assert dict(rollout(stub).weights) == {"1": 0, "2": 100}
        policy_file.unlink()
        assert wait_for(lambda: rollout(stub).state == pb.ROLLOUT_STATE_NONE)


def test_v2_model_infer_without_a_version_follows_the_rollout(
    stub: pb_grpc.AudioClassifierStub, server: InProcessServer
) -> None:
    set_rollout(stub, weights={"1": 100, "2": 0}, guardrails=NO_RAILS)
    with grpc.insecure_channel(server.address) as channel:
        v2_stub = v2_grpc.GRPCInferenceServiceStub(channel)
        versions = {
            v2_stub.ModelInfer(infer_request(), timeout=30).model_version for _ in range(10)
        }
    # Without the rollout the newest (2) would answer.
    assert versions == {"1"}
    _clear(stub)
