"""Rollouts: per-model traffic split, shadow copy, guardrails, rollback and promotion.

A model's rollout policy comes from `models/<name>/rollout.toml` (read with the
repository) or from the SetRollout RPC. It names a weight per version (summing to
100) and optionally one shadow version. The baseline is the oldest version the
policy gives weight to when it is set; every other version is a candidate.

Routing: a call that names a version gets it. Otherwise the router picks a serving
version by weight: by a hash of the caller's routing key when there is one (the same
key always lands on the same version while the weights stay), else at random. A stream
resolves once, so it stays on one version for its whole life.

Guardrails are judged after every recorded outcome on a sliding window of the last
`window_size` outcomes of each version. A candidate that breaks one has its weight set
to 0 at once (the live policy; the file is not edited), the baseline takes its share,
and the event, with the figures that triggered it, is logged, counted and kept in the
status. Promotion is the reverse: with `auto_promote`, a candidate that has held for
`promote_after_s` with `min_samples` outcomes moves up the steps 10 -> 50 -> 100.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections import deque
from collections.abc import Collection, Coroutine, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from mozart_server.errors import InvalidArgumentError
from mozart_server.models.repository import version_key
from mozart_server.models.rollout_policy import (
    RolloutPolicy,
    check_policy,
    parse_policy,
)
from mozart_server.observability.metrics import ServerMetrics
from mozart_server.tensors import FloatArray

logger = logging.getLogger(__name__)

#: Weights a promoted candidate moves through, in percent.
PROMOTION_STEPS = (10, 50, 100)
#: Shadow submissions in flight at once, over every model; more are dropped and counted.
MAX_SHADOW_IN_FLIGHT = 64
#: Status codes that count against a version (a caller's bad input or deadline does not).
VERSION_FAULT_CODES = frozenset({"INTERNAL", "UNKNOWN", "DATA_LOSS"})


class RolloutState(StrEnum):
    """Where a rollout stands."""

    ACTIVE = "ACTIVE"
    ROLLED_BACK = "ROLLED_BACK"
    PROMOTED = "PROMOTED"


@dataclass(frozen=True)
class RolloutEvent:
    """A change the rollout made by itself (or was told to make), with its figures."""

    kind: str  # "set", "rolled_back", "promoted", "file_rejected"
    version: str
    reason: str
    figures: Mapping[str, float]
    unix_ms: int


@dataclass(frozen=True)
class VersionFigures:
    """A version's sliding-window figures, as the guardrails see them."""

    version: str
    samples: int
    faults: int
    p99_latency_s: float
    agreement_samples: int
    agreement: float


@dataclass(frozen=True)
class RolloutStatus:
    """A rollout now: the policy asked for, the weights in force, state and last event."""

    name: str
    policy: RolloutPolicy
    weights: Mapping[str, int]
    baseline: str
    state: RolloutState
    source: str
    last_event: RolloutEvent | None
    versions: tuple[VersionFigures, ...]
    shadow: str


class _Window:
    """The last N outcomes of one version: faults, latencies, shadow agreement."""

    def __init__(self, size: int) -> None:
        self.outcomes: deque[tuple[bool, float]] = deque(maxlen=size)
        self.agreement: deque[bool] = deque(maxlen=size)

    def figures(self, version: str, *, with_p99: bool = True) -> VersionFigures:
        latencies = [latency for _, latency in self.outcomes]
        p99 = float(np.quantile(latencies, 0.99)) if latencies and with_p99 else 0.0
        agreed = sum(self.agreement)
        return VersionFigures(
            version=version,
            samples=len(self.outcomes),
            faults=sum(1 for fault, _ in self.outcomes if fault),
            p99_latency_s=p99,
            agreement_samples=len(self.agreement),
            agreement=agreed / len(self.agreement) if self.agreement else 0.0,
        )


class _Rollout:
    """The live state of one model's rollout."""

    def __init__(self, name: str, policy: RolloutPolicy, source: str) -> None:
        self.name = name
        self.policy = policy
        self.source = source
        self.weights = dict(policy.weights)
        self.shadow = policy.shadow
        given = [version for version, weight in policy.weights.items() if weight > 0]
        self.baseline = min(given, key=version_key)
        self.state = RolloutState.ACTIVE
        self.last_event: RolloutEvent | None = None
        size = policy.guardrails.window_size
        self.windows: dict[str, _Window] = {v: _Window(size) for v in policy.named_versions}
        self.step_started = time.monotonic()

    @property
    def candidates(self) -> list[str]:
        live = [v for v, weight in self.weights.items() if weight > 0 and v != self.baseline]
        return sorted(live + ([self.shadow] if self.shadow else []), key=version_key)


class RolloutRouter:
    """Every model's rollout: chooses versions, records outcomes, rolls back and promotes."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics
        self._rollouts: dict[str, _Rollout] = {}
        self._file_marks: dict[str, tuple[int, int]] = {}
        self._shadow_tasks: set[asyncio.Task[None]] = set()

    # Policies

    def set_policy(
        self, name: str, policy: RolloutPolicy | None, on_disk: Collection[str], source: str
    ) -> RolloutStatus | None:
        """Replaces a model's rollout (None clears it); the new one starts ACTIVE.

        Raises:
            InvalidArgumentError: the policy does not fit the model's versions.
        """
        if policy is not None:
            check_policy(policy, on_disk)
        old = self._rollouts.pop(name, None)
        if old is not None:
            for version in old.policy.named_versions:
                self._metrics.rollout_weight.labels(model=name, version=version).set(0)
        if policy is None:
            if old is not None:
                logger.info("rollout cleared", extra={"model": name, "source": source})
            return None
        rollout = _Rollout(name, policy, source)
        self._rollouts[name] = rollout
        self._event(rollout, "set", "", f"rollout set from {source}", {})
        self._publish_weights(rollout)
        return self.status(name)

    def policy_file_changed(self, name: str, path: Path, on_disk: Collection[str]) -> None:
        """Reads `path` (the model's rollout.toml) when it appeared, changed or vanished.

        A file that is not valid is logged and recorded; the live rollout stays.
        """
        try:
            stat = path.stat()
            mark: tuple[int, int] | None = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            mark = None
        if mark == self._file_marks.get(name):
            return
        if mark is None:
            self._file_marks.pop(name, None)
            rollout = self._rollouts.get(name)
            if rollout is not None and rollout.source == "file":
                self.set_policy(name, None, on_disk, "file")
            return
        self._file_marks[name] = mark
        try:
            self.set_policy(name, parse_policy(path.read_text()), on_disk, "file")
        except (InvalidArgumentError, OSError) as error:
            reason = getattr(error, "message", str(error))
            logger.error(
                "rollout file rejected; the live rollout stays",
                extra={"model": name, "file": str(path), "reason": reason},
            )
            rollout = self._rollouts.get(name)
            if rollout is not None:
                self._event(rollout, "file_rejected", "", reason, {})

    def named_versions(self, name: str) -> set[str]:
        """The versions a model's rollout needs loaded (empty without one)."""
        rollout = self._rollouts.get(name)
        return rollout.policy.named_versions if rollout is not None else set()

    # Routing

    def choose(self, name: str, serving: Collection[str], routing_key: str) -> str:
        """The version a call that names none goes to; "" when no rollout applies."""
        rollout = self._rollouts.get(name)
        if rollout is None:
            return ""
        live = sorted(
            ((v, w) for v, w in rollout.weights.items() if w > 0 and v in serving),
            key=lambda item: version_key(item[0]),
        )
        total = sum(weight for _, weight in live)
        if not total:
            return ""
        if routing_key:
            digest = hashlib.blake2b(f"{name}\0{routing_key}".encode(), digest_size=8).digest()
            point = int.from_bytes(digest, "big") % total
        else:
            point = random.randrange(total)  # noqa: S311 (a traffic split, not a secret)
        for version, weight in live:
            if point < weight:
                return version
            point -= weight
        return live[-1][0]

    def shadow_of(self, name: str, version: str) -> str:
        """The shadow version that should get a copy of a call answered by `version`."""
        rollout = self._rollouts.get(name)
        if rollout is None or not rollout.shadow or version != rollout.baseline:
            return ""
        return rollout.shadow

    # Outcomes

    def record(self, name: str, version: str, code: str, latency_s: float) -> None:
        """Counts one outcome of a version under rollout and judges the guardrails."""
        rollout = self._rollouts.get(name)
        if rollout is None or version not in rollout.windows:
            return
        labels = {"model": name, "version": version}
        self._metrics.rollout_requests.labels(**labels, code=code).inc()
        self._metrics.rollout_window_latency.labels(**labels).observe(latency_s)
        rollout.windows[version].outcomes.append((code in VERSION_FAULT_CODES, latency_s))
        self._judge(rollout)

    def record_scores(self, name: str, version: str, labels: list[str], rows: FloatArray) -> None:
        """Counts the top-1 label and confidence of each window a version under rollout scored."""
        rollout = self._rollouts.get(name)
        if rollout is None or version not in rollout.windows or rows.size == 0:
            return
        best = np.argmax(rows, axis=1)
        for row, index in zip(rows, best, strict=True):
            metric_labels = {"model": name, "version": version}
            self._metrics.rollout_top1_confidence.labels(**metric_labels).observe(float(row[index]))
            self._metrics.rollout_top1_labels.labels(**metric_labels, label=labels[index]).inc()

    def record_agreement(
        self, name: str, version: str, baseline: FloatArray, shadow: FloatArray
    ) -> None:
        """Compares a shadow's top-1 per window with the baseline's answer to the same windows."""
        rollout = self._rollouts.get(name)
        if rollout is None or version not in rollout.windows:
            return
        agreed = np.argmax(baseline, axis=1) == np.argmax(shadow, axis=1)
        for same in agreed:
            result = "agree" if same else "disagree"
            self._metrics.rollout_agreement.labels(model=name, version=version, result=result).inc()
            rollout.windows[version].agreement.append(bool(same))
        self._judge(rollout)

    def spawn_shadow(self, name: str, version: str, work: Coroutine[Any, Any, None]) -> bool:
        """Runs shadow work without anyone waiting on it; False (dropped, counted) when full."""
        if len(self._shadow_tasks) >= MAX_SHADOW_IN_FLIGHT:
            work.close()
            self._metrics.rollout_shadow_dropped.labels(model=name, version=version).inc()
            return False
        task = asyncio.get_running_loop().create_task(work, name=f"shadow-{name}-{version}")
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_done)
        return True

    def _shadow_done(self, task: asyncio.Task[None]) -> None:
        self._shadow_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("shadow call failed", exc_info=task.exception())

    async def aclose(self) -> None:
        """Cancels shadow work still running."""
        tasks = list(self._shadow_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # Guardrails

    def _judge(self, rollout: _Rollout) -> None:
        rails = rollout.policy.guardrails
        # After every outcome: the p99 (a sort of the window) only where a guardrail reads it.
        with_p99 = bool(rails.max_p99_latency_ratio)
        base = rollout.windows[rollout.baseline].figures(rollout.baseline, with_p99=with_p99)
        for version in rollout.candidates:
            figures = rollout.windows[version].figures(version, with_p99=with_p99)
            broken = self._broken(rollout, figures, base)
            if broken:
                self._roll_back(rollout, version, *broken)
                return
        if not rollout.policy.auto_promote or rollout.state is not RolloutState.ACTIVE:
            return
        held_s = time.monotonic() - rollout.step_started
        for version in rollout.candidates:
            figures = rollout.windows[version].figures(version, with_p99=False)
            if figures.samples >= rails.min_samples and held_s >= rollout.policy.promote_after_s:
                self._promote(rollout, version, figures, held_s)
                return

    def _broken(
        self, rollout: _Rollout, figures: VersionFigures, base: VersionFigures
    ) -> tuple[str, dict[str, float]] | None:
        rails = rollout.policy.guardrails
        if figures.samples >= rails.min_samples:
            ratio = figures.faults / figures.samples
            if rails.max_error_ratio and ratio > rails.max_error_ratio:
                return (
                    f"error ratio {ratio:.3f} over {figures.samples} calls exceeds "
                    f"max_error_ratio {rails.max_error_ratio}",
                    {"error_ratio": ratio, "samples": figures.samples, "errors": figures.faults,
                     "max_error_ratio": rails.max_error_ratio},
                )  # fmt: skip
            if (
                rails.max_p99_latency_ratio
                and base.samples >= rails.min_samples
                and base.p99_latency_s > 0
            ):
                ratio = figures.p99_latency_s / base.p99_latency_s
                if ratio > rails.max_p99_latency_ratio:
                    return (
                        f"p99 latency {figures.p99_latency_s * 1000:.2f} ms is {ratio:.2f}x the "
                        f"baseline's {base.p99_latency_s * 1000:.2f} ms (max_p99_latency_ratio "
                        f"{rails.max_p99_latency_ratio})",
                        {"p99_latency_ms": figures.p99_latency_s * 1000,
                         "baseline_p99_latency_ms": base.p99_latency_s * 1000,
                         "p99_latency_ratio": ratio, "samples": figures.samples,
                         "baseline_samples": base.samples,
                         "max_p99_latency_ratio": rails.max_p99_latency_ratio},
                    )  # fmt: skip
        if (
            rails.min_agreement
            and figures.agreement_samples >= rails.min_samples
            and figures.agreement < rails.min_agreement
        ):
            return (
                f"agreement with the baseline {figures.agreement:.3f} over "
                f"{figures.agreement_samples} windows is below min_agreement "
                f"{rails.min_agreement}",
                {"agreement": figures.agreement, "samples": figures.agreement_samples,
                 "min_agreement": rails.min_agreement},
            )  # fmt: skip
        return None

    def _roll_back(
        self, rollout: _Rollout, version: str, reason: str, figures: dict[str, float]
    ) -> None:
        share = rollout.weights.get(version, 0)
        rollout.weights[version] = 0
        rollout.weights[rollout.baseline] = rollout.weights.get(rollout.baseline, 0) + share
        if rollout.shadow == version:
            rollout.shadow = ""
        rollout.state = RolloutState.ROLLED_BACK
        self._metrics.rollout_rollbacks.labels(model=rollout.name, version=version).inc()
        self._publish_weights(rollout)
        self._event(rollout, "rolled_back", version, reason, figures, level=logging.ERROR)

    def _promote(
        self, rollout: _Rollout, version: str, figures: VersionFigures, held_s: float
    ) -> None:
        current = rollout.weights.get(version, 0)
        step = next((s for s in PROMOTION_STEPS if s > current), 100)
        rollout.weights = dict.fromkeys(rollout.weights, 0)
        rollout.weights[version] = step
        rest = 100 - step
        if rest:
            rollout.weights[rollout.baseline] = rest
        if rollout.shadow == version:
            rollout.shadow = ""
        # Each step is judged on its own outcomes, held for promote_after_s again.
        rollout.windows[version] = _Window(rollout.policy.guardrails.window_size)
        rollout.step_started = time.monotonic()
        if step == 100:
            rollout.state = RolloutState.PROMOTED
        self._metrics.rollout_promotions.labels(model=rollout.name, version=version).inc()
        self._publish_weights(rollout)
        self._event(
            rollout, "promoted", version, f"held {held_s:.1f} s over {figures.samples} calls; "
            f"weight {current} -> {step}",
            {"samples": figures.samples, "held_s": held_s, "weight": step},
        )  # fmt: skip

    def _publish_weights(self, rollout: _Rollout) -> None:
        for version in rollout.policy.named_versions:
            weight = rollout.weights.get(version, 0)
            self._metrics.rollout_weight.labels(model=rollout.name, version=version).set(weight)

    def _event(
        self,
        rollout: _Rollout,
        kind: str,
        version: str,
        reason: str,
        figures: Mapping[str, float],
        *,
        level: int = logging.INFO,
    ) -> None:
        rollout.last_event = RolloutEvent(
            kind, version, reason, dict(figures), int(time.time() * 1000)
        )
        logger.log(
            level,
            f"rollout {kind.replace('_', ' ')}",
            extra={"model": rollout.name, "version": version, "reason": reason,
                   "figures": dict(figures), "weights": dict(rollout.weights)},
        )  # fmt: skip

    # Status

    def status(self, name: str) -> RolloutStatus | None:
        """A model's rollout now; None without one."""
        rollout = self._rollouts.get(name)
        if rollout is None:
            return None
        return RolloutStatus(
            name=name,
            policy=rollout.policy,
            weights=dict(rollout.weights),
            baseline=rollout.baseline,
            state=rollout.state,
            source=rollout.source,
            last_event=rollout.last_event,
            versions=tuple(
                rollout.windows[v].figures(v) for v in sorted(rollout.windows, key=version_key)
            ),
            shadow=rollout.shadow,
        )
