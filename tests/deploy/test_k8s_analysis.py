"""The canary AnalysisTemplate's PromQL, run by a real Prometheus scraping a real server.

Prometheus (Debian's package, as promtool for test_monitoring.py) scrapes one server
every second, with the `namespace` and `pod` labels the ServiceMonitor adds in a
cluster; the pod name carries the canary's pod-template hash. Each metric's query, with
the args Argo Rollouts would fill in, must meet its successCondition while the server
serves normally, and the error-ratio condition must fail once the server answers
INTERNAL. The server's model (tests/server/test_finite_scores.py) scores NaN for audio
with a negative mean, which the server refuses as INTERNAL: a real failure inside the
server, not a mocked metric.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import yaml

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.server.streams import audio_messages, config_message
from tests.server.test_finite_scores import F32, RATE, nan_for_negative_audio
from tests.support.lifecycle import rpc_error, wait_for
from tests.support.server import InProcessServer, running_server

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "k8s" / "components" / "rollout" / "analysis-template.yaml"
ADAPTER = ROOT / "k8s" / "prometheus-adapter" / "rules.yaml"
NAMESPACE = "mozart-staging"
CANARY_HASH = "7d9f8c6b5"
POD = f"mozart-server-{CANARY_HASH}-x2lqp"
PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus (Debian package prometheus, in system-packages.txt)"
)


def _free_port() -> int:
    # Prometheus cannot report a port it picked itself, so take one the kernel just gave.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Prometheus:
    """A Prometheus process scraping one target every second."""

    def __init__(self, folder: Path, target: str) -> None:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{
                "job_name": "mozart",
                "static_configs": [{"targets": [target],
                                    "labels": {"namespace": NAMESPACE, "pod": POD}}],
            }],
        }  # fmt: skip
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{_free_port()}"
        assert PROMETHEUS is not None
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"],
            stdout=subprocess.DEVNULL, stderr=(folder / "prometheus.log").open("w"),
        )  # fmt: skip

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector `promql` evaluates to now."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
        assert answer["status"] == "success", answer
        assert answer["data"]["resultType"] == "vector", answer
        return list(answer["data"]["result"])

    def up(self) -> bool:
        try:
            return bool(self.query('up{job="mozart"} == 1'))
        except OSError:
            return False

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    repository = tmp_path_factory.mktemp("analysis-models")
    nan_for_negative_audio(repository)
    with running_server(repository) as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(
    server: InProcessServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    target = urllib.parse.urlsplit(server.metrics_url).netloc
    running = Prometheus(tmp_path_factory.mktemp("prometheus"), target)
    try:
        assert wait_for(running.up, timeout_s=60, every_s=0.5), "Prometheus never scraped"
        yield running
    finally:
        running.close()


def _metrics(canary_hash: str = CANARY_HASH) -> dict[str, dict[str, Any]]:
    """The template's metrics by name, their queries filled in as Argo Rollouts would."""
    template = yaml.safe_load(TEMPLATE.read_text())
    args = {"namespace": NAMESPACE, "canary-hash": canary_hash}
    metrics = {}
    for metric in template["spec"]["metrics"]:
        query = metric["provider"]["prometheus"]["query"]
        metric["query"] = re.sub(r"\{\{args\.([a-z-]+)\}\}", lambda m: args[m.group(1)], query)
        metrics[metric["name"]] = metric
    return metrics


def _meets(condition: str, result: list[float]) -> bool:
    """Argo Rollouts' successCondition (the subset the template uses) for this result."""
    python = condition.replace("||", " or ").replace("&&", " and ").replace("isNaN", "isnan")
    assert re.fullmatch(r"[\w\s\[\]<>=.()]+", python), condition
    return bool(eval(python, {"__builtins__": {}}, {"result": result, "isnan": math.isnan}))


def _evaluate(
    prometheus: Prometheus, canary_hash: str = CANARY_HASH
) -> dict[str, tuple[float, bool]]:
    outcome = {}
    for name, metric in _metrics(canary_hash).items():
        vector = prometheus.query(metric["query"])
        assert len(vector) == 1, (name, vector)  # a number even without data
        value = float(vector[0]["value"][1])
        outcome[name] = (value, _meets(metric["successCondition"], [value]))
    return outcome


def _value(prometheus: Prometheus, metric: str) -> float:
    (sample,) = prometheus.query(_metrics()[metric]["query"])
    return float(sample["value"][1])


def _scraped_calls(prometheus: Prometheus) -> float:
    vector = prometheus.query(f'sum(mozart_requests_total{{pod="{POD}"}})')
    return float(vector[0]["value"][1]) if vector else 0.0


def _request(samples: np.ndarray) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(
        model=pb.ModelRef(name="nanny"),
        format=pb.AudioFormat(encoding=F32, sample_rate_hz=RATE, channels=1),
        audio=samples.astype("<f4").tobytes(),
    )


def _classify(stub: pb_grpc.AudioClassifierStub, mean: float = 0.25) -> None:
    stub.Classify(_request(np.full(RATE * 2, mean, np.float32)), timeout=30)


def _stream(stub: pb_grpc.AudioClassifierStub) -> None:
    audio = np.full(RATE * 2, 0.25, np.float32).astype("<f4").tobytes()
    messages = [config_message(encoding=F32, name="nanny"), *audio_messages(audio, [4000])]
    assert list(stub.StreamClassify(iter(messages), timeout=30))


def _fail(stub: pb_grpc.AudioClassifierStub) -> None:
    error = rpc_error(lambda: _classify(stub, mean=-0.25))
    assert error.code() == grpc.StatusCode.INTERNAL


def _wait_for_series(prometheus: Prometheus, selector: str) -> None:
    # rate() counts from a series' first sample on: what a call adds before Prometheus
    # has seen the series never shows. So each series is made and scraped first.
    assert wait_for(lambda: bool(prometheus.query(selector)), timeout_s=30, every_s=0.5), selector


def test_the_analysis_passes_normal_load_and_fails_when_the_server_fails(
    server: InProcessServer, prometheus: Prometheus
) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.AudioClassifierStub(channel)
        _classify(stub)
        _stream(stub)
        _wait_for_series(prometheus, f'mozart_stream_window_latency_seconds_bucket{{pod="{POD}"}}')
        _wait_for_series(prometheus, f'mozart_requests_total{{pod="{POD}",code="OK"}}')
        for _ in range(20):
            _classify(stub)
        for _ in range(3):
            _stream(stub)
        calls = 25
        assert wait_for(lambda: _scraped_calls(prometheus) >= calls, timeout_s=30, every_s=0.5)
        assert wait_for(
            lambda: math.isfinite(_value(prometheus, "window-latency-p99")),
            timeout_s=30,
            every_s=0.5,
        )
        healthy = _evaluate(prometheus)
        print(f"normal load ({calls} calls): {healthy}")
        assert all(passed for _, passed in healthy.values()), healthy
        assert healthy["error-ratio"][0] == 0.0
        assert 0.0 < healthy["window-latency-p99"][0] <= 0.5

        # Another hash selects no pod: every query still answers, and an idle canary passes.
        idle = _evaluate(prometheus, canary_hash="0000000000")
        assert all(passed for _, passed in idle.values()), idle

        # The server fails: calls end INTERNAL (the model scores NaN).
        _fail(stub)
        _wait_for_series(prometheus, f'mozart_requests_total{{pod="{POD}",code="INTERNAL"}}')
        for _ in range(3):
            _fail(stub)
        calls += 4
        assert wait_for(lambda: _scraped_calls(prometheus) >= calls, timeout_s=30, every_s=0.5)
        wait_for(lambda: _value(prometheus, "error-ratio") > 0, timeout_s=30, every_s=0.5)
        failing = _evaluate(prometheus)
        print(f"after 4 INTERNAL of {calls} calls: {failing}")
        value, passed = failing["error-ratio"]
        assert not passed, failing
        assert value > 0.05
        assert failing["window-latency-p99"][1]  # only the error ratio trips


def test_the_adapter_metric_the_hpa_scales_on_reads_windows_per_pod(
    server: InProcessServer, prometheus: Prometheus
) -> None:
    rule = yaml.safe_load(ADAPTER.read_text())["rules"][0]
    series = rule["seriesQuery"].split("{")[0]
    query = (
        rule["metricsQuery"]
        .replace("<<.Series>>", series)
        .replace("<<.LabelMatchers>>", f'namespace="{NAMESPACE}",pod="{POD}"')
        .replace("<<.GroupBy>>", "pod")
    )
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.AudioClassifierStub(channel)
        _classify(stub)
        _wait_for_series(prometheus, rule["seriesQuery"])
        _classify(stub)

        def computing() -> bool:
            vector = prometheus.query(query)
            return bool(vector) and float(vector[0]["value"][1]) > 0

        assert wait_for(computing, timeout_s=30, every_s=0.5)
    (per_pod,) = prometheus.query(query)
    assert per_pod["metric"] == {"pod": POD}
    print(f"mozart_windows_per_second for {POD}: {per_pod['value'][1]}")
