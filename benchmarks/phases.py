"""One Locust phase: a user class at a fixed load, run headless, measured between two scrapes.

The runner (run.py) and the baseline gate (abba.py) both run their load through here.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from benchmarks.cpus import pinned
from benchmarks.results import PhaseResult, read_raw, server_delta
from benchmarks.server_process import RunningServer, scrape

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).with_name("locustfile.py")


@dataclass(frozen=True)
class Phase:
    """One Locust run: a user class at a fixed number of users for a fixed time."""

    name: str
    user_class: str
    users: int
    seconds: int
    unary_mode: str = "clips"
    stream_rate: str = "clip"
    hop_ms: int = 0  # streams' hop; 0 takes the model's default


@dataclass(frozen=True)
class Load:
    """What every phase of a run sends: the model, the clips, streams' length, Locust's CPUs."""

    model: str
    clips: str
    stream_seconds: float
    cpus: frozenset[int] | None = None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_phase(
    phase: Phase,
    *,
    address: str,
    model: str,
    clips: str,
    stream_seconds: float,
    folder: Path,
    cpus: frozenset[int] | None = None,
    processes: int = 1,
) -> float:
    """Runs Locust headless for one phase, on `cpus` if given; CSVs and log land in `folder`.

    With `processes` above 1, that many Locust processes share the users (each its own
    interpreter, so one process's GIL does not cap the load) and their raw rows are merged
    into `<phase>_requests.csv`. Returns the CPU seconds the load generator used (Linux;
    None where the OS does not report a child's usage).
    """
    processes = max(1, min(processes, phase.users))
    shares = [phase.users // processes + (i < phase.users % processes) for i in range(processes)]
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in paths if path))
    raw = folder / f"{phase.name}_requests.csv"
    parts = [raw] if processes == 1 else [
        folder / f"{phase.name}_requests.{i}.csv" for i in range(processes)
    ]  # fmt: skip
    running: list[tuple[subprocess.Popen[bytes], IO[str]]] = []
    # Only Locust's processes end (and are reaped) during a phase: the server's stay up.
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with pinned(cpus):
        for number, (users, part) in enumerate(zip(shares, parts, strict=True)):
            suffix = "" if processes == 1 else f".{number}"
            command = [
                sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), phase.user_class,
                "--headless", "--only-summary", "--loglevel", "WARNING",
                "-u", str(users), "-r", str(users), "-t", f"{phase.seconds}s",
                "--host", address, "--model", model, "--clips", clips,
                "--unary-mode", phase.unary_mode, "--hop-ms", str(phase.hop_ms),
                "--stream-seconds", str(stream_seconds), "--stream-rate", phase.stream_rate,
                "--raw-csv", str(part),
            ]  # fmt: skip
            if number == 0:  # one set of Locust's own CSVs is enough
                command += ["--csv", str(folder / phase.name)]
            log: IO[str] = (folder / f"{phase.name}{suffix}.log").open("w")
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
            running.append((process, log))
    deadline = time.monotonic() + phase.seconds + 120
    for process, log in running:
        # Locust exits 1 when a request failed; the summary counts failures itself.
        try:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (children_after.ru_utime + children_after.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    missing = [part for part in parts if not part.exists()]
    if missing:
        raise RuntimeError(
            f"Locust wrote no results for {phase.name}; see {folder}/{phase.name}*.log"
        )
    if processes > 1:
        _merge(parts, raw)
    return cpu_s


def _merge(parts: Sequence[Path], into: Path) -> None:
    """Concatenates raw request CSVs that share one header."""
    with into.open("w", newline="") as merged:
        for number, part in enumerate(parts):
            lines = part.read_text().splitlines(keepends=True)
            merged.writelines(lines if number == 0 else lines[1:])
            part.unlink()


def say(message: str) -> None:
    print(message, flush=True)


def progress(phase: PhaseResult, ceiling_windows_per_s: float) -> str:
    return (
        f"    {phase.requests} requests, {phase.failures} failed, "
        f"{phase.windows_per_s:.1f} windows/s ({phase.windows_per_s / ceiling_windows_per_s:.2f} "
        f"of the first ceiling), median {phase.latency.median_ms:.1f} ms, "
        f"p99 {phase.latency.p99_ms:.1f} ms, "
        f"mean batch {phase.server.mean_batch_size:.1f}"
    )


def measure_phase(
    phase: Phase,
    *,
    title: str,
    server: RunningServer,
    load: Load,
    folder: Path,
    ceiling_windows_per_s: float,
    processes: int = 1,
) -> PhaseResult:
    """Runs one phase between two /metrics scrapes and reads its results."""
    say(f"[{title}] {phase.name}: {phase.users} x {phase.user_class} for {phase.seconds} s")
    before, cpu_before = scrape(server.metrics_url), cpu_seconds(server.pid)
    (folder / f"{phase.name}_metrics_before.txt").write_text(str(before))
    load_cpu_s = run_phase(
        phase,
        address=server.address,
        model=load.model,
        clips=load.clips,
        stream_seconds=load.stream_seconds,
        folder=folder,
        cpus=load.cpus,
        processes=processes,
    )
    after, cpu_after = scrape(server.metrics_url), cpu_seconds(server.pid)
    (folder / f"{phase.name}_metrics_after.txt").write_text(str(after))
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    result = read_raw(
        folder / f"{phase.name}_requests.csv",
        name=phase.name,
        user_class=phase.user_class,
        users=phase.users,
        seconds=phase.seconds,
        server=server_delta(before, after, cpu),
        load_cpu_s=load_cpu_s,
    )
    say(progress(result, ceiling_windows_per_s))
    time.sleep(0.5)  # let the last calls of this phase drain before the next scrape
    return result
