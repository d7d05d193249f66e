"""The Prometheus rules in k8s/monitoring: promtool checks them and runs their unit
tests, and every metric they read is one that a real server exports."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import InProcessServer

MONITORING = Path(__file__).resolve().parents[2] / "k8s" / "monitoring"
#: Each rule file and the metric families its rules must read (so a test cannot pass on
#: a file whose expressions name nothing).
RULE_FILES = {
    "mozart-rules.yml": 6,
    "mozart-rollout-rules.yml": 3,
}
each_rule_file = pytest.mark.parametrize("rules", sorted(RULE_FILES))
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool (Debian package prometheus, in system-packages.txt)"
)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=MONITORING, capture_output=True, text=True, timeout=120, check=False
    )


@needs_promtool
@each_rule_file
def test_promtool_accepts_the_rules(rules: str) -> None:
    checked = _promtool("check", "rules", rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


@needs_promtool
@each_rule_file
def test_the_alerts_fire_as_their_unit_tests_say(rules: str) -> None:
    tested = _promtool("test", "rules", rules.replace(".yml", ".test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _metric_families_in_rules(rules: str) -> set[str]:
    groups = yaml.safe_load((MONITORING / rules).read_text())["groups"]
    names: set[str] = set()
    for group in groups:
        for rule in group["rules"]:
            for name in re.findall(r"\bmozart_[a-z_]+", rule["expr"]):
                names.add(re.sub(r"_(bucket|sum|count|total)$", "", name))
    return names


@each_rule_file
def test_every_metric_the_rules_read_is_exported_by_the_server(
    server: InProcessServer, rules: str
) -> None:
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        exported = {
            family.name for family in text_string_to_metric_families(response.read().decode())
        }
    used = _metric_families_in_rules(rules)
    assert len(used) >= RULE_FILES[rules], used
    assert used <= exported, f"not exported: {sorted(used - exported)}"
