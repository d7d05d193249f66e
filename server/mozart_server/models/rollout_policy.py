"""Rollout policies: what `rollout.toml` or SetRollout asks for, parsed and checked.

A policy names a weight per version (percent, summing to 100), optionally one shadow
version, the guardrails a candidate must keep, and whether it is promoted step by step.
The router that applies it is `models.rollout`.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from mozart_server.errors import InvalidArgumentError
from mozart_server.models.repository import version_key

ROLLOUT_FILE = "rollout.toml"


@dataclass(frozen=True)
class Guardrails:
    """Limits a candidate must keep; 0 switches a limit off."""

    max_error_ratio: float = 0.05
    max_p99_latency_ratio: float = 0.0
    min_agreement: float = 0.0
    min_samples: int = 100
    window_size: int = 500


@dataclass(frozen=True)
class RolloutPolicy:
    """What a rollout asks for: weights in percent by version, a shadow version, guardrails."""

    weights: Mapping[str, int]
    shadow: str = ""
    guardrails: Guardrails = field(default_factory=Guardrails)
    auto_promote: bool = False
    promote_after_s: float = 600.0

    @property
    def named_versions(self) -> set[str]:
        """Every version the policy names (these must be loaded)."""
        return set(self.weights) | ({self.shadow} if self.shadow else set())


def check_policy(policy: RolloutPolicy, on_disk: Collection[str]) -> None:
    """Checks a policy against the model's version folders.

    Raises:
        InvalidArgumentError: naming what is wrong (unknown versions, weights not summing
            to 100, a guardrail out of range).
    """
    unknown = sorted(policy.named_versions - set(on_disk), key=version_key)
    if unknown:
        raise InvalidArgumentError(
            f"the rollout names versions {unknown} that the repository does not have "
            f"(it has: {sorted(on_disk, key=version_key)})"
        )
    if not policy.weights:
        raise InvalidArgumentError(
            'a rollout needs weights naming at least the baseline, e.g. weights = {"3" = 100}'
        )
    if any(weight < 0 for weight in policy.weights.values()):
        raise InvalidArgumentError(f"rollout weights must not be negative: {dict(policy.weights)}")
    total = sum(policy.weights.values())
    if total != 100:
        raise InvalidArgumentError(
            f"rollout weights must sum to 100; {dict(policy.weights)} sums to {total}"
        )
    if policy.shadow and policy.weights.get(policy.shadow, 0) > 0:
        raise InvalidArgumentError(
            f"shadow version {policy.shadow!r} also has a weight; a shadow gets a copy of "
            "the traffic, never its own share"
        )
    rails = policy.guardrails
    if not 0.0 <= rails.max_error_ratio <= 1.0 or not 0.0 <= rails.min_agreement <= 1.0:
        raise InvalidArgumentError("max_error_ratio and min_agreement must lie in [0, 1]")
    if rails.max_p99_latency_ratio < 0 or rails.min_samples < 1 or rails.window_size < 1:
        raise InvalidArgumentError(
            "max_p99_latency_ratio must be >= 0, min_samples and window_size >= 1"
        )
    if rails.min_samples > rails.window_size:
        raise InvalidArgumentError(
            f"min_samples ({rails.min_samples}) must not exceed window_size ({rails.window_size})"
        )
    if not (math.isfinite(policy.promote_after_s) and policy.promote_after_s >= 0):
        raise InvalidArgumentError("promote_after_s must be a finite number >= 0")


def parse_policy(text: str) -> RolloutPolicy:
    """Reads a rollout.toml.

    Raises:
        InvalidArgumentError: the TOML is malformed or a field has the wrong type.
    """
    try:
        data = tomllib.loads(text)
        weights = {str(version): int(weight) for version, weight in data.get("weights", {}).items()}
        rails = data.get("guardrails", {})
        known = set(Guardrails.__dataclass_fields__)
        extra = set(rails) - known
        if extra:
            raise InvalidArgumentError(
                f"unknown guardrails {sorted(extra)} (known: {sorted(known)})"
            )
        guardrails = Guardrails(
            max_error_ratio=float(rails.get("max_error_ratio", Guardrails.max_error_ratio)),
            max_p99_latency_ratio=float(
                rails.get("max_p99_latency_ratio", Guardrails.max_p99_latency_ratio)
            ),
            min_agreement=float(rails.get("min_agreement", Guardrails.min_agreement)),
            min_samples=int(rails.get("min_samples", Guardrails.min_samples)),
            window_size=int(rails.get("window_size", Guardrails.window_size)),
        )
        return RolloutPolicy(
            weights=weights,
            shadow=str(data.get("shadow", "")),
            guardrails=guardrails,
            auto_promote=bool(data.get("auto_promote", False)),
            promote_after_s=float(data.get("promote_after_s", 600.0)),
        )
    except (tomllib.TOMLDecodeError, TypeError, ValueError, AttributeError) as error:
        raise InvalidArgumentError(f"{ROLLOUT_FILE} is not valid: {error}") from None
