"""The server's own log lines: "listening on HOST:PORT" with the ports it bound, in both formats.

`python -m mozart_server --port 0 --metrics-port 0` as a subprocess; the addresses read from
its stderr are then used: a health check over a real gRPC channel, /metrics over HTTP.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.server import HOST, spawned_server

LISTENING = re.compile(r"listening on (127\.0\.0\.1:\d+) \((grpc|metrics|http)\)")


def _check_addresses(grpc_address: str, metrics_address: str) -> None:
    with grpc.insecure_channel(grpc_address) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=30
        )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=30) as response:
        assert b"mozart_requests_total" in response.read()


@contextmanager
def _server_in_text(model_repository: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """The server with APP_ENV=dev and no log format given; yields it once it serves."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MOZART_")}
    env["APP_ENV"] = "dev"
    process = subprocess.Popen(
        [sys.executable, "-m", "mozart_server", "--host", HOST, "--port", "0",
         "--metrics-host", HOST, "--metrics-port", "0", "--http-host", HOST, "--http-port", "0",
         "--drain-delay-s", "0",
         "--model-repository", str(model_repository)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        while not re.search(r"\] serving\s", seen[-1] if seen else ""):
            seen.append(lines.get(timeout=120))
        yield process, seen
    finally:
        process.kill()
        process.wait(30)
        reader.join(30)


def test_text_logs_say_where_the_server_listens(model_repository: Path) -> None:
    with _server_in_text(model_repository) as (_, lines):
        assert not any(line.startswith("{") for line in lines), "APP_ENV=dev means text"
        listening = {
            service: address for line in lines for address, service in LISTENING.findall(line)
        }
        assert set(listening) == {"grpc", "metrics", "http"}, lines
        assert not any(address.endswith(":0") for address in listening.values())
        _check_addresses(listening["grpc"], listening["metrics"])


def test_json_logs_say_where_the_server_listens(model_repository: Path) -> None:
    with spawned_server(model_repository) as server:
        listening = {
            entry["service"]: (entry["message"], entry["port"])
            for entry in server.logs
            if str(entry.get("message", "")).startswith("listening on ")
        }
        metrics_port = int(server.metrics_url.split(":")[2].split("/")[0])
        started = next(entry for entry in server.logs if entry.get("message") == "server started")
        http_port = int(started["http_port"])
        assert listening == {
            "grpc": (f"listening on {HOST}:{server.port} (grpc)", server.port),
            "metrics": (f"listening on {HOST}:{metrics_port} (metrics)", metrics_port),
            "http": (f"listening on {HOST}:{http_port} (http)", http_port),
        }
        _check_addresses(server.address, f"{HOST}:{metrics_port}")
