"""Rollout requests and statuses: built and parsed once for `Client` and `AsyncClient`."""

from __future__ import annotations

from collections.abc import Mapping

from mozart_client.errors import InvalidInputError
from mozart_client.results import (
    RolloutEvent,
    RolloutState,
    RolloutStatus,
    RolloutVersionFigures,
)
from mozart_proto.v1 import audio_classifier_pb2 as pb

_STATES = {
    pb.ROLLOUT_STATE_NONE: RolloutState.NONE,
    pb.ROLLOUT_STATE_ACTIVE: RolloutState.ACTIVE,
    pb.ROLLOUT_STATE_ROLLED_BACK: RolloutState.ROLLED_BACK,
    pb.ROLLOUT_STATE_PROMOTED: RolloutState.PROMOTED,
}


def _by_version(weights: Mapping[str, int]) -> dict[str, int]:
    # Proto maps have no order; show versions in numeric order.
    order = sorted(weights, key=lambda v: (int(v), v) if v.isdigit() else (-1, v))
    return {version: int(weights[version]) for version in order}


def _name(name: str) -> str:
    if not name or not name.strip():
        raise InvalidInputError("name the model whose rollout to show or set")
    return name


def get_rollout_request(name: str) -> pb.GetRolloutRequest:
    """The GetRollout request; InvalidInputError before sending for no name."""
    return pb.GetRolloutRequest(name=_name(name))


def set_rollout_request(
    name: str,
    weights: Mapping[str, int] | None,
    *,
    shadow: str = "",
    max_error_ratio: float | None = None,
    max_p99_latency_ratio: float = 0.0,
    min_agreement: float = 0.0,
    min_samples: int = 0,
    window_size: int = 0,
    auto_promote: bool = False,
    promote_after_s: float = 600.0,
) -> pb.SetRolloutRequest:
    """The SetRollout request; `weights=None` clears the model's rollout.

    Unset guardrails take the server's defaults (max_error_ratio 0.05, min_samples 100,
    window_size 500); a ratio of 0 switches that guardrail off.
    """
    if weights is None:
        return pb.SetRolloutRequest(name=_name(name), clear=True)
    guardrails = pb.RolloutGuardrails(
        max_error_ratio=0.05 if max_error_ratio is None else max_error_ratio,
        max_p99_latency_ratio=max_p99_latency_ratio,
        min_agreement=min_agreement,
        min_samples=min_samples,
        window_size=window_size,
    )
    policy = pb.RolloutPolicy(
        weights={str(version): int(weight) for version, weight in weights.items()},
        shadow=shadow,
        guardrails=guardrails,
        auto_promote=auto_promote,
        promote_after_s=promote_after_s,
    )
    return pb.SetRolloutRequest(name=_name(name), policy=policy)


def rollout_status_from_proto(status: pb.RolloutStatus) -> RolloutStatus:
    """Builds a RolloutStatus from its message; unknown states become UNSPECIFIED."""
    event = status.last_event if status.HasField("last_event") else None
    return RolloutStatus(
        name=status.name,
        state=_STATES.get(status.state, RolloutState.UNSPECIFIED),
        weights=_by_version(status.weights),
        policy_weights=_by_version(status.policy.weights),
        baseline=status.baseline,
        shadow=status.shadow,
        source=status.source,
        last_event=(
            RolloutEvent(event.kind, event.version, event.reason, dict(event.figures),
                         event.unix_ms)
            if event is not None else None
        ),
        versions=tuple(
            RolloutVersionFigures(v.version, v.samples, v.errors, v.p99_latency_ms,
                                  v.agreement_samples, v.agreement)
            for v in status.versions
        ),
    )  # fmt: skip
