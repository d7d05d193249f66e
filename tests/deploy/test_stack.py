"""The compose stack's monitoring, run for real: Debian's prometheus and alertmanager as
processes on free loopback ports, with the files docker/compose.yaml mounts, scraping a
real Mozart server (a subprocess) under a short load.

What the test changes in those files, and only that: Prometheus scrapes and evaluates
every 500 ms; its targets are the loopback ports; and the rule files are loaded with
every duration divided by 120 (`[5m]` -> `[2500ms]`, `for: 10m` -> `for: 5s`), so an
alert fires and clears within the test. The promtool unit tests (test_monitoring.py) check the
real durations.

Checked: every recording rule and every dashboard query answers a non-empty result; a
model that scores NaN makes MozartServerErrors reach Alertmanager (its API v2), and the
alert leaves Alertmanager once the bad calls stop.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import yaml

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.server.streams import audio_messages, config_message
from tests.server.test_finite_scores import nan_for_negative_audio
from tests.support.audio import encode, music_clip
from tests.support.models import build_test_model
from tests.support.server import HOST, SpawnedServer, spawned_server

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
RULES = ROOT / "k8s" / "monitoring"
RULE_FILES = ("mozart-rules.yml", "mozart-rollout-rules.yml")
DASHBOARDS = DOCKER / "grafana" / "dashboards"
DEFAULT_MODEL = ROOT / "models" / "composer-cnn" / "1"
#: Durations in the rule files are divided by this.
TIME_SCALE = 120
#: Grafana's variables, as the dashboard's defaults resolve them here.
VARIABLES = {"$__rate_interval": "10s", "$model": ".*", "$ceiling": "400"}
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        PROMETHEUS is None or ALERTMANAGER is None,
        reason="prometheus and prometheus-alertmanager (Debian, system-packages.txt)",
    ),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def compress_durations(text: str, scale: int = TIME_SCALE) -> str:
    """A rule file's range selectors and `for:` durations, divided by `scale`."""

    def shorter(match: re.Match[str]) -> str:
        ms = int(match.group(2)) * {"s": 1_000, "m": 60_000, "h": 3_600_000}[match.group(3)]
        ms = max(1_000, ms // scale)
        return f"{match.group(1)}{ms // 1000}s" if ms % 1000 == 0 else f"{match.group(1)}{ms}ms"

    text = re.sub(r"(\[)(\d+)([smh])(?=\])", shorter, text)
    return re.sub(r"(\bfor: )(\d+)([smh])\b", shorter, text)


def prometheus_config(
    rules_dir: Path, metrics_target: str, alertmanager: str, prometheus: str
) -> dict[str, Any]:
    """docker/prometheus/prometheus.yml with this test's intervals, addresses and rules."""
    config: dict[str, Any] = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="500ms", evaluation_interval="500ms")
    config["rule_files"] = [str(rules_dir / Path(path).name) for path in config["rule_files"]]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    targets = {"mozart-server": metrics_target, "prometheus": prometheus}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _wait(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    give_up = time.monotonic() + timeout_s
    while True:
        try:
            value = condition()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > give_up:
            raise AssertionError(f"gave up after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.25)


@contextmanager
def _process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


def _repository(root: Path) -> Path:
    """tiny/1; nanny/1 and nanny/2 (NaN for negative audio) under a 50/50 rollout; and the
    default model, whose reference_stats give the drift panels their series."""
    build_test_model(root)
    first = nan_for_negative_audio(root)
    second = root / "nanny" / "2"
    shutil.copytree(first, second)
    manifest = json.loads((second / "model.json").read_text())
    (second / "model.json").write_text(json.dumps({**manifest, "version": "2"}))
    (root / "nanny" / "rollout.toml").write_text(
        'weights = {"1" = 50, "2" = 50}\n[guardrails]\nmax_error_ratio = 0\n'
    )
    shutil.copytree(DEFAULT_MODEL, root / "composer-cnn" / "1")
    return root


def _f32(name: str, samples: np.ndarray) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(
        model=pb.ModelRef(name=name),
        format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_PCM_F32LE, sample_rate_hz=16_000,
                              channels=1),
        audio=samples.astype("<f4").tobytes(),
    )  # fmt: skip


class Load:
    """Calls in a background thread until stopped: `good` traffic on every path the
    dashboards show, and `bad` calls (INTERNAL) while `faulty` is set."""

    def __init__(self, server: SpawnedServer) -> None:
        self.server = server
        self.stopped = threading.Event()
        self.faulty = threading.Event()
        self.calls = 0
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self._thread.join(60)

    def _expect_internal(self, stub: pb_grpc.AudioClassifierStub, request: Any) -> None:
        try:
            stub.Classify(request, timeout=30)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.INTERNAL:
                self.errors.append(f"NaN call answered {error.code()}")
        else:
            self.errors.append("NaN call answered OK")

    def _run(self) -> None:
        clip = music_clip(2.0, seed=1)
        pcm = encode(clip, 16_000, pb.AUDIO_ENCODING_PCM_S16LE)
        wav = encode(clip, 16_000, pb.AUDIO_ENCODING_WAV)
        tiny = pb.ClassifyRequest(
            model=pb.ModelRef(name="tiny"),
            format=pb.AudioFormat(encoding=pb.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=16_000,
                                  channels=1),
            audio=pcm,
        )  # fmt: skip
        noise = np.random.default_rng(0).normal(0, 0.1, 16_000 * 12).astype(np.float32)
        positive = np.full(16_000, 0.25, np.float32)
        negative = np.full(16_000, -0.25, np.float32)
        with (
            grpc.insecure_channel(self.server.address) as channel,
            httpx.Client(base_url=self.server.http_url, timeout=30) as http,
        ):
            stub = pb_grpc.AudioClassifierStub(channel)
            rounds = 0
            while not self.stopped.is_set():
                try:
                    stub.Classify(tiny, timeout=30)
                    stub.Classify(_f32("nanny", positive), timeout=30)
                    stream = [config_message(), *audio_messages(pcm, [3200])]
                    list(stub.StreamClassify(iter(stream), timeout=30))
                    http.post("/v1/models/tiny/classify", content=wav).raise_for_status()
                    if rounds % 5 == 0:  # 7 windows: the drift scores need 5
                        stub.Classify(_f32("composer-cnn", noise), timeout=60)
                    if self.faulty.is_set():
                        for _ in range(3):
                            self._expect_internal(stub, _f32("nanny", negative))
                except (grpc.RpcError, httpx.HTTPError) as error:
                    self.errors.append(repr(error))
                self.calls += 1
                rounds += 1
                time.sleep(0.05)


def _dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL with the variables resolved) for every target of every panel."""
    queries = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets") or []:
                expr = target["expr"]
                for variable, value in VARIABLES.items():
                    expr = expr.replace(variable, value)
                queries.append((f"{path.stem}: {panel['title']} ({target['refId']})", expr))
    return queries


def _recording_rules() -> list[str]:
    return [
        rule["record"]
        for name in RULE_FILES
        for group in yaml.safe_load((RULES / name).read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    ]


def test_prometheus_and_alertmanager_see_a_real_server(tmp_path: Path) -> None:
    repository = _repository(tmp_path / "models")
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for name in RULE_FILES:
        (rules_dir / name).write_text(compress_durations((RULES / name).read_text()))
    prometheus_port, alertmanager_port = _free_port(), _free_port()
    prometheus_url = f"http://{HOST}:{prometheus_port}"
    alertmanager_url = f"http://{HOST}:{alertmanager_port}"
    flags = ("--drift-interval-s", "1", "--drift-min-windows", "5",
             "--drift-mel-every-windows", "1")  # fmt: skip
    started = time.monotonic()
    with ExitStack() as stack:
        server = stack.enter_context(spawned_server(repository, *flags))
        metrics_target = server.metrics_url.removeprefix("http://").removesuffix("/metrics")
        config = prometheus_config(
            rules_dir, metrics_target, f"{HOST}:{alertmanager_port}", f"{HOST}:{prometheus_port}"
        )
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        assert ALERTMANAGER is not None
        assert PROMETHEUS is not None
        stack.enter_context(_process([
            ALERTMANAGER, f"--config.file={DOCKER / 'alertmanager' / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'alertmanager'}",
            f"--web.listen-address={HOST}:{alertmanager_port}", "--cluster.listen-address=",
        ], tmp_path / "alertmanager.log"))  # fmt: skip
        stack.enter_context(_process([
            PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={HOST}:{prometheus_port}", "--rules.alert.resend-delay=500ms",
        ], tmp_path / "prometheus.log"))  # fmt: skip

        def query(expr: str) -> list[Any]:
            url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            answer = _get_json(url)
            assert answer["status"] == "success", answer
            return list(answer["data"]["result"])

        def server_target_up() -> bool:
            targets = _get_json(f"{prometheus_url}/api/v1/targets")["data"]["activeTargets"]
            return any(
                t["labels"]["job"] == "mozart-server" and t["health"] == "up" for t in targets
            )

        def alerts_in_alertmanager() -> list[dict[str, Any]]:
            filtered = urllib.parse.urlencode({"filter": 'alertname="MozartServerErrors"'})
            found = _get_json(f"{alertmanager_url}/api/v2/alerts?active=true&{filtered}")
            return [alert for alert in found if alert["status"]["state"] == "active"]

        _wait(server_target_up, 30, "Prometheus to scrape the server")
        load = stack.enter_context(Load(server))
        load.faulty.set()
        fault_at = time.monotonic()

        # Every recording rule and every dashboard query answers, under load and fault.
        rules = _recording_rules()
        assert len(rules) >= 9, rules
        for record in rules:
            _wait(lambda r=record: query(r), 30, f"recording rule {record}")  # type: ignore[misc]
        panels = _dashboard_queries()
        assert len(panels) >= 20, panels
        for title, expr in panels:
            _wait(lambda e=expr: query(e), 30, f"{title}: {expr}")  # type: ignore[misc]

        answered_s = time.monotonic() - fault_at
        # The fault's alert reaches Alertmanager with the rule's labels...
        firing = _wait(alerts_in_alertmanager, 45, "MozartServerErrors in Alertmanager")
        fired_s = time.monotonic() - fault_at
        assert firing[0]["labels"]["severity"] == "critical"
        assert firing[0]["labels"]["stack"] == "mozart-compose"  # external_labels
        assert "1%" in firing[0]["annotations"]["summary"]
        # ...and leaves once the calls that score NaN stop (good ones go on).
        load.faulty.clear()
        cleared_at = time.monotonic()
        _wait(lambda: not alerts_in_alertmanager(), 45, "MozartServerErrors to clear")
        cleared_s = time.monotonic() - cleared_at
        states = [a["state"] for a in _get_json(f"{prometheus_url}/api/v1/alerts")["data"]["alerts"]
                  if a["labels"]["alertname"] == "MozartServerErrors"]  # fmt: skip
        assert "firing" not in states, states
        assert not load.errors, load.errors[:5]
        print(
            f"\nstack: {len(rules)} recording rules and {len(panels)} dashboard queries "
            f"answered within {answered_s:.1f} s of load; MozartServerErrors reached "
            f"Alertmanager {fired_s:.1f} s after the first NaN call and left it "
            f"{cleared_s:.1f} s after the last; {load.calls} load rounds; "
            f"{time.monotonic() - started:.1f} s in all"
        )
