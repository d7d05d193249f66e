"""Writes k8s/components/monitoring/prometheus-rules.yaml from k8s/monitoring's rule files.

The Prometheus Operator loads rules from PrometheusRule objects; their `spec.groups`
are the rule files' `groups:` unchanged, so the rules promtool tests are the rules
the cluster runs. `--check` exits 1 when the file on disk differs from a fresh render.

    python scripts/k8s_prometheus_rules.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULE_FILES = ("mozart-rules.yml", "mozart-rollout-rules.yml")
OUTPUT = ROOT / "k8s" / "components" / "monitoring" / "prometheus-rules.yaml"
HEADER = (
    "# Generated from k8s/monitoring/{files}\n"
    "# by scripts/k8s_prometheus_rules.py: do not edit.\n"
    "# tests/deploy/test_k8s_manifests.py fails when this file and the rule files differ.\n"
)


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (PromQL, descriptions) as `|` blocks, as in the rule files."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _string)


def render(monitoring: Path = ROOT / "k8s" / "monitoring") -> str:
    """The PrometheusRule documents, one per rule file, as one YAML stream."""
    documents: list[dict[str, Any]] = []
    for name in RULE_FILES:
        groups = yaml.safe_load((monitoring / name).read_text())["groups"]
        documents.append(
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "PrometheusRule",
                "metadata": {"name": name.removesuffix(".yml")},
                "spec": {"groups": groups},
            }
        )
    body = yaml.dump_all(documents, Dumper=_BlockDumper, sort_keys=False, width=100)
    return HEADER.format(files=", ".join(RULE_FILES)) + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    rendered = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != rendered:
            stale = OUTPUT.relative_to(ROOT)
            print(f"{stale} is stale: run scripts/{Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
