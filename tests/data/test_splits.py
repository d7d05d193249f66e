"""Seeded, stratified splits by group."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mozart_trainer.data.splits import stratified_group_split

labels = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]),
    st.integers(min_value=1, max_value=40),
    min_size=1,
)


@settings(max_examples=50, deadline=None)
@given(sizes=labels, seed=st.integers(0, 1000))
def test_every_group_gets_one_split_and_classes_are_stratified(sizes, seed) -> None:
    groups = {label: [f"{label}-{i}" for i in range(n)] for label, n in sizes.items()}
    split = stratified_group_split(groups, seed)
    assert set(split) == {g for gs in groups.values() for g in gs}
    assert set(split.values()) <= {"train", "val", "test"}
    for label, members in groups.items():
        present = {split[g] for g in members}
        if len(members) >= 3:
            assert present == {"train", "val", "test"}, label
    assert stratified_group_split(groups, seed) == split


def test_a_different_seed_gives_a_different_split() -> None:
    groups = {"x": [f"w{i}" for i in range(30)]}
    assert stratified_group_split(groups, 0) != stratified_group_split(groups, 1)
