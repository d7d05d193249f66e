"""The Grafana dashboards in docker/grafana: written by their code, every query parses
(promtool), names only metrics a real server exports or recording rules of
k8s/monitoring, and the provisioning files point at them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import InProcessServer

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "docker" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
RULES = ROOT / "k8s" / "monitoring"
#: What Grafana puts in place of the dashboards' variables (for parsing only).
VARIABLES = {"$__rate_interval": "1m", "$model": ".*", "$ceiling": "400"}
PROMTOOL = shutil.which("promtool")


def _targets() -> list[tuple[str, str]]:
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets") or []:
                expr = target["expr"]
                for variable, value in VARIABLES.items():
                    expr = expr.replace(variable, value)
                found.append((f"{path.stem}: {panel['title']} ({target['refId']})", expr))
    return found


def test_the_written_dashboards_are_what_the_code_builds() -> None:
    checked = subprocess.run(
        [sys.executable, str(GRAFANA / "dashboards.py"), "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert [path.name for path in DASHBOARDS] == ["mozart-serving.json"]


def test_every_panel_has_a_title_a_unit_and_queries_on_the_provisioned_datasource() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uid = datasources["datasources"][0]["uid"]
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        panels = [panel for panel in board["panels"] if panel["type"] != "row"]
        assert len(panels) >= 15
        titles = [panel["title"] for panel in panels]
        assert len(set(titles)) == len(titles), titles
        for panel in panels:
            assert panel["targets"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
            assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        # Everything the variables stand for is replaced before a query is parsed.
        used = set(re.findall(r"\$\w+", json.dumps([p["targets"] for p in panels])))
        assert used <= set(VARIABLES), used - set(VARIABLES)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus)")
def test_every_query_parses(tmp_path: Path) -> None:
    targets = _targets()
    assert len(targets) >= 20
    # promtool parses each expression as it would a recording rule's.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(targets)
    ]}]}  # fmt: skip
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(rules))
    assert PROMTOOL is not None
    checked = subprocess.run([PROMTOOL, "check", "rules", str(tmp_path / "queries.yml")],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(targets)} rules found" in checked.stdout


def test_a_query_that_does_not_parse_is_caught(tmp_path: Path) -> None:
    if PROMTOOL is None:
        pytest.skip("promtool (Debian package prometheus)")
    rules = {"groups": [{"name": "bad", "rules": [{"record": "bad:q", "expr": "sum by (x (y)"}]}]}
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(rules))
    checked = subprocess.run([PROMTOOL, "check", "rules", str(tmp_path / "bad.yml")],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert checked.returncode != 0


def _recorded() -> set[str]:
    names: set[str] = set()
    for path in RULES.glob("mozart-*rules.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


def test_every_query_names_only_exported_metrics(server: InProcessServer) -> None:
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        exported = {
            family.name for family in text_string_to_metric_families(response.read().decode())
        }
    used: set[str] = set()
    recorded: set[str] = set()
    for _, expr in _targets():
        for name in re.findall(r"\bmozart_[a-z_]+", expr):
            used.add(re.sub(r"_(bucket|sum|count|total)$", "", name))
        recorded.update(re.findall(r"\bmozart:[a-z_:0-9]+", expr))
    assert len(used) >= 15, used
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    assert recorded <= _recorded(), f"no such recording rule: {sorted(recorded - _recorded())}"


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_the_provisioned_dashboards_folder_is_where_compose_mounts_them() -> None:
    provider = _load(GRAFANA / "provisioning/dashboards/mozart.yml")["providers"][0]
    compose = _load(ROOT / "docker" / "compose.yaml")
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts, mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts, mounts


def test_docs_monitoring_names_every_metric_and_alert(server: InProcessServer) -> None:
    docs = (ROOT / "docs" / "monitoring.md").read_text()
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        families = list(text_string_to_metric_families(response.read().decode()))
    # A counter's `_created` samples parse as a family of their own: not a metric.
    mozart = [
        family
        for family in families
        if family.name.startswith("mozart_") and not family.name.endswith("_created")
    ]
    assert len(mozart) >= 30
    for family in mozart:
        shown = family.name + ("_total" if family.type == "counter" else "")
        assert f"| `{shown}` |" in docs, f"docs/monitoring.md does not list {shown}"
    for path in RULES.glob("mozart-*rules.yml"):
        for group in _load(path)["groups"]:
            for rule in group["rules"]:
                assert f"`{rule.get('alert') or rule['record']}`" in docs, rule
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            assert panel["title"] in docs, panel["title"]
