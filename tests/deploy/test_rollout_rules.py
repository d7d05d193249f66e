"""The rollout alert rules in k8s/monitoring: promtool checks them and runs their unit
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
RULES = MONITORING / "mozart-rollout-rules.yml"
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
def test_promtool_accepts_the_rollout_rules() -> None:
    checked = _promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


@needs_promtool
def test_the_rollout_alerts_fire_as_their_unit_tests_say() -> None:
    tested = _promtool("test", "rules", "mozart-rollout-rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_metric_the_rollout_rules_read_is_exported_by_the_server(
    server: InProcessServer,
) -> None:
    names: set[str] = set()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            for name in re.findall(r"\bmozart_[a-z_]+", rule["expr"]):
                names.add(re.sub(r"_(bucket|sum|count|total)$", "", name))
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        exported = {
            family.name for family in text_string_to_metric_families(response.read().decode())
        }
    assert names == {
        "mozart_rollout_rollbacks", "mozart_rollout_requests", "mozart_rollout_shadow_dropped"
    }  # fmt: skip
    assert names <= exported, f"not exported: {sorted(names - exported)}"
