"""The CPUs this process may use (affinity and cgroup quota), and the engine layout they call for.

`os.cpu_count()` counts the host's CPUs, not the ones a container may use: a pod limited
to 2 CPUs on a 64-core node sees 64. What bounds the process is the smaller of its CPU
affinity (`taskset`, cpuset cgroups, Kubernetes static CPU manager) and its CFS quota
(`docker --cpus`, Kubernetes CPU limits), rounded up to whole CPUs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# The auto layout (docs/server.md): intra-op threads per session, and the fewest sessions.
THREADS_PER_INSTANCE = 2
MIN_INSTANCES = 2


@dataclass(frozen=True)
class UsableCpus:
    """How many CPUs the process may use, and what bounds it."""

    count: int
    affinity: int
    quota: float | None  # CPUs the cgroup quota grants (fractional), None when unlimited

    @property
    def bound_by(self) -> str:
        """`quota` when the cgroup quota is the tighter bound, else `affinity`."""
        if self.quota is not None and math.ceil(self.quota) < self.affinity:
            return "quota"
        return "affinity"


def cgroup_quota_cpus(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs granted by the cgroup CPU quota under `root`; None when there is no limit.

    Reads cgroup v2 `cpu.max` ("max 100000" is no limit; "150000 100000" is 1.5 CPUs),
    else cgroup v1 `cpu/cpu.cfs_quota_us` over `cpu/cpu.cfs_period_us` (a quota of -1 is
    no limit). Files that are missing or unreadable count as no limit.
    """
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        parts = v2.split()
        if len(parts) == 2 and parts[0] != "max":
            return _ratio(parts[0], parts[1])
        return None
    for folder in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        quota = _read(root / folder / "cpu.cfs_quota_us")
        period = _read(root / folder / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            return _ratio(quota, period)
    return None


def usable_cpus(root: Path = CGROUP_ROOT, affinity: int | None = None) -> UsableCpus:
    """The CPUs this process may use: min(affinity, quota rounded up), at least 1.

    Args:
        root: the cgroup file system (a folder of fake files in tests).
        affinity: the affinity count to assume; by default `os.sched_getaffinity(0)`.
    """
    if affinity is None:
        affinity = _affinity_count()
    quota = cgroup_quota_cpus(root)
    count = affinity if quota is None else min(affinity, math.ceil(quota))
    return UsableCpus(count=max(1, count), affinity=affinity, quota=quota)


@dataclass(frozen=True)
class Layout:
    """ONNX Runtime parallelism of one model version: sessions, threads and spinning."""

    instances: int
    intra_op_threads: int
    allow_spinning: bool


def default_layout(
    cpus: int, instances: int | None = None, intra_op_threads: int | None = None
) -> Layout:
    """The layout `auto` resolves to on `cpus` CPUs (docs/server.md, "Defaults that fit...").

    The rule, from measurements on a 2-CPU machine with two CNNs (docs/server.md): two
    intra-op threads per session (one on one CPU), and as many sessions as the CPUs hold
    at that width but never fewer than two, without spinning. Two threads cut the batch-1
    compute of a heavier model about in half; a second session computes while the first
    one's results go back and the next batch forms, which one session leaves idle; idle
    threads that do not spin sleep, so the second session costs little when it has no
    work; spinning threads take the CPU the event loop and the other session need. A
    value given explicitly is kept and the other fitted around it: explicit instances
    share the CPUs among them; explicit threads set how many sessions fit (still at
    least two), and 0 (ORT's own choice, a thread per core) gets one session.

    Args:
        cpus: usable CPUs (`usable_cpus().count`).
        instances: an explicit instance count, or None for auto.
        intra_op_threads: an explicit intra-op thread count, or None for auto.
    """
    cpus = max(1, cpus)
    if instances is None:
        threads = min(THREADS_PER_INSTANCE, cpus) if intra_op_threads is None else intra_op_threads
        instances = 1 if threads == 0 else max(MIN_INSTANCES, cpus // threads)
        intra_op_threads = threads
    elif intra_op_threads is None:
        intra_op_threads = max(1, cpus // instances)
    return Layout(instances=instances, intra_op_threads=intra_op_threads, allow_spinning=False)


def _affinity_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:
        return None
    return quota_us / period_us
