"""The serving path needs no torch, and the SDK needs nothing of the server.

Each check imports every module of a package in a fresh interpreter, then looks
at what landed in sys.modules. Setting a module to None in sys.modules makes any
import of it fail, so a hidden `import torch` anywhere breaks the test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

IMPORT_ALL = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    for blocked in {blocked!r}:
        sys.modules[blocked] = None
    package = importlib.import_module({package!r})
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)
    print(" ".join(sorted(name for name, module in sys.modules.items() if module is not None)))
    """
)


def _modules_after_importing(package: str, blocked: list[str]) -> set[str]:
    code = IMPORT_ALL.format(package=package, blocked=blocked)
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    return set(completed.stdout.split())


def _top_level(modules: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in modules}


def test_server_imports_without_torch_or_trainer() -> None:
    loaded = _top_level(
        _modules_after_importing("mozart_server", ["torch", "mozart_trainer", "mozart_optimize"])
    )
    assert "mozart_server" in loaded
    assert not loaded & {"torch", "mozart_trainer", "mozart_optimize"}


@pytest.mark.parametrize("forbidden", ["mozart_server", "onnxruntime", "torch", "mozart_trainer"])
def test_client_imports_nothing_of_the_server(forbidden: str) -> None:
    loaded = _top_level(_modules_after_importing("mozart_client", [forbidden]))
    assert "mozart_client" in loaded
    assert forbidden not in loaded


def test_proto_package_is_self_contained() -> None:
    loaded = _top_level(_modules_after_importing("mozart_proto", ["torch", "onnxruntime", "numpy"]))
    assert not loaded & {"mozart_server", "mozart_client", "mozart_trainer"}
