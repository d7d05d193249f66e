"""Start a real Mozart server on 127.0.0.1:0 for tests, in-process or as a subprocess.

In-process (fast; the server runs on its own event loop in a thread)::

    from tests.support.server import running_server
    with running_server(model_repository, max_batch_size=8) as server:
        channel = grpc.insecure_channel(server.address)
        ... server.metric("mozart_active_streams") ...

As a subprocess (`python -m mozart_server --port 0 --metrics-port 0 ...`), for signal
and exit-code tests::

    with spawned_server(model_repository, "--shutdown-grace-s", "5") as server:
        server.terminate()              # SIGTERM
        assert server.wait(30) == 0

Both handles give `address` ("127.0.0.1:PORT"), `port`, `metrics_url`, `scrape()` (the
/metrics text over real HTTP) and `metric(name, **labels)` (one sample's value, 0.0 when
absent). Settings are passed as keyword arguments (in-process) or flags (subprocess).
tests/conftest.py wraps these in the `model_repository` and `server` fixtures.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from mozart_server.app import MozartServer
from mozart_server.settings import ServerSettings

HOST = "127.0.0.1"


class _Scraping:
    metrics_url: str

    def scrape(self) -> str:
        """The /metrics page, fetched over HTTP."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return str(response.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """The value of the sample `name` whose labels include `labels` (summed), else 0.0."""
        total = 0.0
        for family in text_string_to_metric_families(self.scrape()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total


class InProcessServer(_Scraping):
    """A MozartServer running on its own event loop thread."""

    def __init__(self, settings: ServerSettings) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.server = MozartServer(settings)
        self._call(self.server.start(), timeout_s=120)
        self.port = self.server.port
        self.address = f"{HOST}:{self.port}"
        self.metrics_url = f"http://{HOST}:{self.server.metrics_port}/metrics"
        self.http_port = self.server.http_port
        self.http_url = f"http://{HOST}:{self.http_port}"
        self._stopped = False

    def _call(self, coroutine: Any, timeout_s: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def stop(self, grace_s: float = 5.0) -> None:
        """Drains and stops the server (idempotent), then ends its event loop."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._call(self.server.stop(grace_s), timeout_s=grace_s + 60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()

    def stop_in_background(self, grace_s: float) -> threading.Thread:
        """Starts draining without waiting (to watch a shutdown from the client side)."""
        thread = threading.Thread(target=self.stop, args=(grace_s,), daemon=True)
        thread.start()
        return thread


@contextmanager
def running_server(model_repository: Path, **settings: Any) -> Iterator[InProcessServer]:
    """A real server on 127.0.0.1:0 (metrics too) with the given settings, stopped on exit."""
    # No drain delay unless a test asks for one: nothing balances load in front of it.
    values: dict[str, Any] = {"host": HOST, "port": 0, "metrics_host": HOST, "metrics_port": 0,
                              "http_host": HOST, "http_port": 0,
                              "drain_delay_s": 0.0}  # fmt: skip
    values.update(settings, model_repository=model_repository)
    server = InProcessServer(ServerSettings(**values))
    try:
        yield server
    finally:
        server.stop()


class SpawnedServer(_Scraping):
    """`python -m mozart_server` in a child process; its JSON log lines are kept in `logs`."""

    def __init__(self, args: list[str], env: dict[str, str], timeout_s: float = 120) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mozart_server", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.logs: list[dict[str, Any]] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read_logs, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout_s) or self.process.poll() is not None:
            self.process.kill()
            raise RuntimeError(f"the server did not become ready; logs: {self.logs}")
        started = next(entry for entry in self.logs if entry.get("message") == "server started")
        self.port = int(started["grpc_port"])
        self.address = f"{HOST}:{self.port}"
        self.metrics_url = f"http://{HOST}:{int(started['metrics_port'])}/metrics"
        self.http_port = int(started.get("http_port") or 0)
        self.http_url = f"http://{HOST}:{self.http_port}"

    def _read_logs(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                entry = {"message": line.rstrip(), "level": "RAW"}
            self.logs.append(entry)
            if entry.get("message") in (
                "serving",
                "no model version loaded; health stays NOT_SERVING",
            ):
                self._ready.set()
        self._ready.set()

    def terminate(self) -> None:
        """Sends SIGTERM."""
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> int:
        """Waits for the exit code."""
        code = self.process.wait(timeout_s)
        self._reader.join(timeout=10)
        return code


@contextmanager
def spawned_server(model_repository: Path, *flags: str) -> Iterator[SpawnedServer]:
    """A server subprocess on 127.0.0.1:0 with extra flags; killed on exit if still running."""
    args = ["--host", HOST, "--port", "0", "--metrics-host", HOST, "--metrics-port", "0",
            "--http-host", HOST, "--http-port", "0",
            "--drain-delay-s", "0",  # a test's own --drain-delay-s comes later and wins
            "--model-repository", str(model_repository), *flags]  # fmt: skip
    # Nor APP_ENV: APP_ENV=dev would make its log lines text, and `logs` reads JSON.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("MOZART_") and key != "APP_ENV"}  # fmt: skip
    server = SpawnedServer(args, env)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(30)
