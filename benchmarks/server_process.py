"""The server under test: `python -m mozart_server` in its own process, and its /metrics."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.cpus import pinned

HOST = "127.0.0.1"
_READY = "serving"
_ENGINE_CHOSEN = "engine chosen"  # the EngineFactory's log line, one per version loaded
_NOT_READY = "no model version loaded; health stays NOT_SERVING"
_SOURCE = "benchmark source"
# Runs `python -m mozart_server` after logging, as one JSON line, which files it imports:
# the proof that a baseline's server runs the baseline's code, not the candidate's.
_LAUNCH = (
    "import json, runpy, sys, mozart_proto, mozart_server; "
    f"print(json.dumps({{'message': {_SOURCE!r}, 'mozart_server': mozart_server.__file__, "
    "'mozart_proto': mozart_proto.__file__}), file=sys.stderr, flush=True); "
    "runpy.run_module('mozart_server', run_name='__main__', alter_sys=True)"
)


@dataclass(frozen=True)
class RunningServer:
    """Where the server listens, and what it serves."""

    address: str
    metrics_url: str
    pid: int
    #: The mozart_server package file the server process imported.
    module_file: str = ""
    #: The artifact file each model is served from, by model name, as the server logged
    #: it ("engine chosen"); empty when its log level hides INFO lines.
    artifacts: Mapping[str, str] = field(default_factory=dict)


def scrape(metrics_url: str) -> dict[str, float]:
    """Every sample on the /metrics page, summed over labels, keyed by sample name.

    Histogram buckets keep their bound: `name_bucket{le="0.1"}`, summed over other labels.
    """
    # Only ever the benchmark's own server's ServerProcess.metrics_url (http://HOST:PORT/metrics).
    with urllib.request.urlopen(metrics_url, timeout=10) as response:  # noqa: S310  # nosec B310
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name
            if "le" in sample.labels:
                key = f'{sample.name}{{le="{sample.labels["le"]}"}}'
            totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def _environment(source: Path | None) -> dict[str, str]:
    """This process's environment; with `source`, its server and proto packages first."""
    env = dict(os.environ)
    # The HTTP API (on by default, port 8000) on a free port: two benchmark servers, or one
    # beside a server already on 8000, must not collide. A variable, not a flag, so that a
    # baseline older than the HTTP API ignores it.
    env.setdefault("MOZART_HTTP_PORT", "0")
    if source is not None:
        # PYTHONPATH comes before the venv's editable installs on sys.path.
        paths = [str(source / "server"), str(source / "proto"), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    return env


@contextmanager
def server_process(
    model_repository: Path,
    settings: Mapping[str, str],
    log_file: Path,
    *,
    start_timeout_s: float = 180.0,
    cpus: frozenset[int] | None = None,
    source: Path | None = None,
) -> Iterator[RunningServer]:
    """Starts the server on 127.0.0.1 with free ports, waits until it serves, stops it on exit.

    Args:
        model_repository: the model repository folder.
        settings: extra server settings by name (`max_batch_size` -> `--max-batch-size`).
        log_file: where the server's JSON log lines are written.
        start_timeout_s: how long loading and warming the models may take.
        cpus: the CPUs the server runs on; None leaves it where the OS puts it.
        source: a source tree whose `server/` and `proto/` are imported instead of the
            installed packages (a baseline checkout); None runs what the venv has.

    Raises:
        RuntimeError: the server exited or did not become ready in time.
    """
    # No drain delay: nothing routes traffic to this server, so its stop need not wait.
    flags = ["--host", HOST, "--port", "0", "--metrics-host", HOST, "--metrics-port", "0",
             "--model-repository", str(model_repository), "--drain-delay-s", "0"]  # fmt: skip
    for name, value in settings.items():
        flags += ["--" + name.replace("_", "-"), value]
    with pinned(cpus):
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and flags, no shell
            [sys.executable, "-c", _LAUNCH, *flags],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=_environment(source),
        )
    events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()

    def copy_logs() -> None:
        assert process.stderr is not None
        with log_file.open("w") as log:
            for line in process.stderr:
                log.write(line)
                log.flush()
                try:
                    events.put(json.loads(line))
                except json.JSONDecodeError:
                    continue
        events.put({"message": "exited"})

    reader = threading.Thread(target=copy_logs, daemon=True)
    reader.start()
    try:
        started: dict[str, Any] = {}
        artifacts: dict[str, str] = {}
        module_file = ""
        while True:
            try:
                entry = events.get(timeout=start_timeout_s)
            except queue.Empty:
                raise RuntimeError(f"the server did not become ready; see {log_file}") from None
            if entry.get("message") == _SOURCE:
                module_file = str(entry.get("mozart_server"))
            elif entry.get("message") == "server started":
                started = entry
            elif entry.get("message") == _ENGINE_CHOSEN:
                artifacts[str(entry.get("model"))] = str(entry.get("artifact"))
            elif entry.get("message") == _READY:
                break
            elif entry.get("message") in (_NOT_READY, "exited", "cannot start"):
                raise RuntimeError(f"the server did not start serving; see {log_file}")
        yield RunningServer(
            address=f"{HOST}:{started['grpc_port']}",
            metrics_url=f"http://{HOST}:{started['metrics_port']}/metrics",
            pid=process.pid,
            module_file=module_file,
            artifacts=artifacts,
        )
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        reader.join(timeout=10)
