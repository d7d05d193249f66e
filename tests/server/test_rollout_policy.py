"""The rollout policy and router on their own: rollout.toml parsing, the checks, routing
invariants (Hypothesis) and the promotion steps. The server-level behaviour is in
test_rollout.py and test_rollout_guardrails.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from mozart_server.errors import InvalidArgumentError
from mozart_server.models.rollout import RolloutRouter, RolloutState
from mozart_server.models.rollout_policy import (
    Guardrails,
    RolloutPolicy,
    check_policy,
    parse_policy,
)
from mozart_server.observability.metrics import ServerMetrics

ON_DISK = ("1", "2", "3")


def _router() -> RolloutRouter:
    return RolloutRouter(ServerMetrics(CollectorRegistry()))


def test_a_full_rollout_toml_parses() -> None:
    policy = parse_policy(
        'weights = {"3" = 90, "4" = 10}\nshadow = "5"\nauto_promote = true\n'
        "promote_after_s = 30\n[guardrails]\nmax_error_ratio = 0.01\n"
        "max_p99_latency_ratio = 2.5\nmin_agreement = 0.9\nmin_samples = 50\nwindow_size = 100\n"
    )
    assert policy == RolloutPolicy(
        weights={"3": 90, "4": 10},
        shadow="5",
        guardrails=Guardrails(0.01, 2.5, 0.9, 50, 100),
        auto_promote=True,
        promote_after_s=30.0,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("weights = {", "not valid"),
        ('weights = {"1" = "lots"}', "not valid"),
        ('weights = {"1" = 100}\n[guardrails]\nmax_errors = 1', "unknown guardrails"),
    ],
)
def test_a_bad_rollout_toml_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        parse_policy(text)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (RolloutPolicy({"1": 60, "2": 30}), "sums to 90"),
        (RolloutPolicy({"1": 50, "9": 50}), r"\['9'\]"),
        (RolloutPolicy({}), "needs weights"),
        (RolloutPolicy({"1": 110, "2": -10}), "negative"),
        (RolloutPolicy({"1": 50, "2": 50}, shadow="2"), "also has a weight"),
        (RolloutPolicy({"1": 100}, guardrails=Guardrails(min_samples=9, window_size=5)), "exceed"),
    ],
)
def test_policies_that_do_not_fit_are_refused(policy: RolloutPolicy, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        check_policy(policy, ON_DISK)


@st.composite
def _weights(draw: st.DrawFn) -> dict[str, int]:
    cut = sorted(draw(st.lists(st.integers(0, 100), min_size=2, max_size=2)))
    shares = [cut[0], cut[1] - cut[0], 100 - cut[1]]
    return dict(zip(ON_DISK, shares, strict=True))


@given(weights=_weights(), key=st.text(max_size=20))
def test_routing_picks_a_serving_version_with_weight_and_a_key_always_the_same(
    weights: dict[str, int], key: str
) -> None:
    router = _router()
    policy = RolloutPolicy(weights, guardrails=Guardrails(min_samples=1, window_size=1))
    router.set_policy("m", policy, ON_DISK, "api")
    chosen = router.choose("m", ON_DISK, key)
    assert weights[chosen] > 0
    if key:
        assert all(router.choose("m", ON_DISK, key) == chosen for _ in range(5))
    # A version that is not serving is never chosen; with none serving, no choice.
    serving = [v for v in ON_DISK if v != chosen]
    again = router.choose("m", serving, key)
    assert again in serving or again == ""
    assert router.choose("m", [], key) == ""


def test_a_model_without_a_rollout_is_not_routed() -> None:
    assert _router().choose("m", ON_DISK, "key") == ""


def test_promotion_steps_10_50_100_each_on_fresh_outcomes() -> None:
    router = _router()
    rails = Guardrails(max_error_ratio=0.5, min_samples=3, window_size=10)
    policy = RolloutPolicy({"1": 90, "2": 10}, guardrails=rails, auto_promote=True,
                           promote_after_s=0.0)  # fmt: skip
    router.set_policy("m", policy, ON_DISK, "api")
    seen = []
    for _ in range(12):
        router.record("m", "2", "OK", 0.001)
        status = router.status("m")
        assert status is not None
        seen.append(status.weights["2"])
    assert seen[:9] == [10, 10, 50, 50, 50, 100, 100, 100, 100]
    status = router.status("m")
    assert status is not None
    assert status.state is RolloutState.PROMOTED
    assert status.weights == {"1": 0, "2": 100}


def test_caller_errors_do_not_count_against_a_candidate() -> None:
    router = _router()
    rails = Guardrails(max_error_ratio=0.1, min_samples=3, window_size=10)
    router.set_policy("m", RolloutPolicy({"1": 50, "2": 50}, guardrails=rails), ON_DISK, "api")
    for code in ("INVALID_ARGUMENT", "OUT_OF_RANGE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"):
        router.record("m", "2", code, 0.001)
    status = router.status("m")
    assert status is not None
    assert status.state is RolloutState.ACTIVE
    router.record("m", "2", "INTERNAL", 0.001)
    status = router.status("m")
    assert status is not None
    assert status.state is RolloutState.ROLLED_BACK
    assert status.weights == {"1": 100, "2": 0}
    assert status.last_event is not None
    assert status.last_event.figures["errors"] == 1
