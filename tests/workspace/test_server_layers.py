"""The server's layers import only the layers below them (docs/architecture.md).

Every module of mozart_server is parsed, and each `import mozart_server.X` or
`from mozart_server.X import ...` in it (at any depth, TYPE_CHECKING blocks and
function bodies included) is checked against the layer rules below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mozart_server

PACKAGE_DIR = Path(mozart_server.__file__).parent

BASE = {"tensors", "errors", "settings", "cpus"}
# Each layer and the layers it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "tensors": set(),
    "errors": set(),
    "cpus": set(),
    "env_aliases": set(),
    "settings": {"cpus", "env_aliases"},
    "observability": BASE,
    "engines": BASE | {"observability"},
    "audio": BASE | {"observability"},
    "batching": BASE | {"observability", "engines"},
    "models": BASE | {"observability", "engines", "batching"},
    "inference": BASE | {"observability", "engines", "batching", "audio", "models"},
    "api": BASE | {"observability", "engines", "batching", "audio", "models", "inference"},
    "app": BASE | {"observability", "engines", "batching", "audio", "models", "inference", "api"},
    "cli": BASE | {"observability", "app"},
    "__main__": {"cli"},
    "__init__": set(),
}


def _layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE_DIR)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imported_layers(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "mozart_server" and len(parts) > 1:
                layers.add(parts[1])
    return layers


MODULES = sorted(PACKAGE_DIR.rglob("*.py"))


def test_every_layer_is_known() -> None:
    assert {_layer_of(path) for path in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE_DIR)))
def test_module_imports_only_lower_layers(path: Path) -> None:
    layer = _layer_of(path)
    forbidden = _imported_layers(path) - ALLOWED[layer] - {layer}
    assert not forbidden, f"{layer}/ may not import {sorted(forbidden)} ({path.name})"


def test_the_rules_catch_an_upward_import(tmp_path: Path) -> None:
    # The checker itself: an engine module importing the API layer is caught.
    module = tmp_path / "bad.py"
    module.write_text("from mozart_server.api.v1 import servicer\n")
    assert _imported_layers(module) - ALLOWED["engines"] == {"api"}
