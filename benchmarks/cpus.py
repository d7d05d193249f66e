"""CPU pinning for a run: the server and the ceiling on some cores, Locust on others.

On a machine with cores to spare, pinning keeps the load generator from taking CPU
time from the server, which the in-process ceiling never has to share. Processes
started inside `pinned` inherit its CPU set (Linux affinity), and keep it afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def parse_cpu_list(text: str) -> frozenset[int]:
    """Parses a Linux CPU list such as ``0-1`` or ``0,2,4-7``.

    Raises:
        ValueError: the text is not a CPU list, or names CPUs this process may not use.
    """
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            bounds = [int(bound) for bound in part.strip().split("-")]
            if len(bounds) > 2 or bounds[0] > bounds[-1]:
                raise ValueError
            cpus.update(range(bounds[0], bounds[-1] + 1))
    except ValueError:
        raise ValueError(f"{text!r} is not a CPU list such as 0-1 or 0,2,4-7") from None
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        raise ValueError(
            f"CPUs {sorted(cpus - allowed)} are not available to this process "
            f"(it may use {sorted(allowed)})"
        )
    return frozenset(cpus)


@contextmanager
def pinned(cpus: frozenset[int] | None) -> Iterator[None]:
    """Runs the block, and every process it starts, on `cpus`; None leaves affinity alone."""
    if cpus is None:
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)
