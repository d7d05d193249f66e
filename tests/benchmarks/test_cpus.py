"""CPU lists and pinning: what `--server-cpus` and `--load-cpus` rest on."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmarks.cpus import parse_cpu_list, pinned


def test_parses_ranges_and_single_cpus() -> None:
    available = sorted(os.sched_getaffinity(0))
    first, last = available[0], available[-1]
    assert parse_cpu_list(f"{first}") == {first}
    assert parse_cpu_list(f" {last},{first}") == {first, last}
    if available == list(range(first, last + 1)):  # a range needs every CPU in it usable
        assert parse_cpu_list(f"{first}-{last}") == set(available)
    assert parse_cpu_list(f"{first}-{first}") == {first}


@pytest.mark.parametrize("text", ["", "a", "3-1", "0-", "1,,2"])
def test_rejects_what_is_not_a_cpu_list(text: str) -> None:
    with pytest.raises(ValueError, match="not a CPU list"):
        parse_cpu_list(text)


def test_rejects_cpus_this_process_cannot_use() -> None:
    beyond = max(os.sched_getaffinity(0)) + 1
    with pytest.raises(ValueError, match=rf"CPUs \[{beyond}\] are not available"):
        parse_cpu_list(str(beyond))


def test_children_started_inside_inherit_the_cpus_and_the_caller_gets_its_own_back() -> None:
    before = os.sched_getaffinity(0)
    one = frozenset({max(before)})
    with pinned(one):
        child = subprocess.run(
            [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
    assert child.stdout.strip() == str(sorted(one))
    assert os.sched_getaffinity(0) == before
