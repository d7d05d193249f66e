"""Seeded, stratified splits by group: a group (work, track) never lands in two splits."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SplitFractions:
    """Shares of each class's groups for validation and test; the rest is train."""

    val: float = 0.2
    test: float = 0.2

    def __post_init__(self) -> None:
        if self.val < 0 or self.test < 0 or self.val + self.test >= 1:
            raise ValueError(f"val and test fractions must be >= 0 and sum below 1: {self}")


def seeded_rng(*parts: object) -> random.Random:
    """A random generator seeded from its arguments, stable across processes and Python runs."""
    key = "\x1f".join(str(part) for part in parts)
    return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))  # noqa: S311


def stratified_group_split(
    groups_by_label: Mapping[str, Sequence[str]],
    seed: int,
    fractions: SplitFractions | None = None,
) -> dict[str, str]:
    """Assigns every group to ``train``, ``val`` or ``test``, class by class.

    Each class's groups are shuffled with a generator seeded by ``seed`` and the
    class name, then cut by the fractions. A class with at least three groups gets
    at least one in each split, so thin classes still appear in every split.

    Args:
        groups_by_label: the groups (work or track ids) of each label.
        seed: the split seed.
        fractions: validation and test shares.

    Returns:
        The split name of every group.
    """
    fractions = fractions or SplitFractions()
    assignment: dict[str, str] = {}
    for label in sorted(groups_by_label):
        groups = sorted(set(groups_by_label[label]))
        seeded_rng(seed, "split", label).shuffle(groups)
        total = len(groups)
        n_test = round(total * fractions.test)
        n_val = round(total * fractions.val)
        if total >= 3:
            n_test = max(n_test, 1) if fractions.test > 0 else 0
            n_val = max(n_val, 1) if fractions.val > 0 else 0
        n_train = total - n_val - n_test
        for index, group in enumerate(groups):
            if group in assignment:
                raise ValueError(f"group {group!r} appears under two labels")
            if index < n_train:
                assignment[group] = "train"
            elif index < n_train + n_val:
                assignment[group] = "val"
            else:
                assignment[group] = "test"
    return assignment
