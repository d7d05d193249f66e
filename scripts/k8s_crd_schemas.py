"""Converts CustomResourceDefinitions' openAPIV3Schema into JSON Schema files.

The CRD objects in k8s/ (Rollout, AnalysisTemplate, ServiceMonitor, PrometheusRule) are
checked against the schemas their projects publish in their CRDs. This turns each served
version of a CRD into k8s/schemas/<kind>-<group>-<version>.json, strict in the way
`kubernetes-validate --strict` is for core objects: an object that names a property the
schema does not know is refused, except below `x-kubernetes-preserve-unknown-fields`.
Descriptions are dropped (the schemas are for checking, not reading). The sources, tags
and checksums of the CRD files are in k8s/schemas/SOURCES.md; to update, fetch the CRD
files of a new release and run

    python scripts/k8s_crd_schemas.py CRD.yaml... [--output k8s/schemas]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DROPPED = {"description", "x-kubernetes-list-map-keys", "x-kubernetes-list-type",
           "x-kubernetes-map-type", "x-kubernetes-validations"}  # fmt: skip


def to_json_schema(node: Any) -> Any:
    """One OpenAPI v3 schema node (and everything under it) as JSON Schema."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROPPED or key in ("nullable", "x-kubernetes-int-or-string"):
            continue
        if key == "x-kubernetes-preserve-unknown-fields":
            continue
        if key == "pattern" and "(?i)" in value:
            # Go's inline case flag has no ECMA-262 form (JSON Schema's regex dialect);
            # the one such pattern (PrometheusRule partial_response_strategy) is dropped.
            continue
        if key in ("properties", "patternProperties"):
            schema[key] = {name: to_json_schema(child) for name, child in value.items()}
        else:
            schema[key] = to_json_schema(value)
    if node.get("x-kubernetes-int-or-string"):
        schema.pop("type", None)
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(schema.get("type"), str):
        schema["type"] = [schema["type"], "null"]
    preserve = node.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in schema and "additionalProperties" not in schema and not preserve:
        schema["additionalProperties"] = False
    return schema


def convert(crd_path: Path, output: Path) -> list[Path]:
    """Writes one JSON Schema per served version of the CRD; returns their paths."""
    written: list[Path] = []
    source = crd_path.read_bytes()
    for crd in yaml.safe_load_all(source):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served", True):
                continue
            schema = to_json_schema(version["schema"]["openAPIV3Schema"])
            properties = schema.setdefault("properties", {})
            # An object of another kind or version must not pass by accident.
            properties["apiVersion"] = {"enum": [f"{group}/{version['name']}"]}
            properties["kind"] = {"enum": [kind]}
            schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            schema["$comment"] = (
                f"{kind} {group}/{version['name']}, converted by scripts/k8s_crd_schemas.py "
                f"from {crd_path.name} (sha256 {hashlib.sha256(source).hexdigest()}); "
                "see SOURCES.md"
            )
            path = output / f"{kind.lower()}-{group.split('.')[0]}-{version['name']}.json"
            path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crds", nargs="+", type=Path, help="CRD YAML files")
    parser.add_argument("--output", type=Path, default=ROOT / "k8s" / "schemas")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    for crd in args.crds:
        for path in convert(crd, args.output):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
