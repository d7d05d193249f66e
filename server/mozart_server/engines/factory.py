"""Picks and builds the engine of a model version from its artifacts and the engine settings.

Each engine kind names the artifact it serves (`model.onnx`, later `model.plan`) and a
builder that imports its runtime only when called, so a runtime that is not installed
costs nothing until a version asks for it. A new engine is one module plus one
`EngineKind` in `ENGINE_KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mozart_server.engines.base import Engine
from mozart_server.errors import ModelLoadError
from mozart_server.settings import EngineSettings


@dataclass(frozen=True)
class EngineKind:
    """One kind of engine: its name, the artifact file it serves, and how to build it."""

    name: str
    artifact: str
    build: Callable[[Path, EngineSettings], Engine]


def _build_onnx(artifact: Path, settings: EngineSettings) -> Engine:
    from mozart_server.engines.onnx import OnnxEngine  # noqa: PLC0415 - imported when used

    return OnnxEngine(artifact, settings.onnx)


ENGINE_KINDS = (EngineKind("onnxruntime", "model.onnx", _build_onnx),)


class EngineFactory:
    """Builds engines for version folders, trying kinds in `engine_priority` order."""

    def __init__(self, settings: EngineSettings, kinds: Sequence[EngineKind] = ENGINE_KINDS):
        """Checks that every kind in the priority list is known.

        Raises:
            ModelLoadError: naming an unknown engine kind.
        """
        known = {kind.name: kind for kind in kinds}
        unknown = [name for name in settings.engine_priority if name not in known]
        if unknown:
            raise ModelLoadError(f"engine_priority names unknown engines {unknown} (known: "
                             f"{sorted(known)})")  # fmt: skip
        self._settings = settings
        self._kinds = [known[name] for name in settings.engine_priority]

    def create(self, version_path: Path) -> Engine:
        """Builds the engine of the first kind whose artifact lies in `version_path`.

        Raises:
            ModelLoadError: no artifact of any allowed kind, or the engine cannot load it.
        """
        for kind in self._kinds:
            artifact = version_path / kind.artifact
            if artifact.is_file():
                return kind.build(artifact, self._settings)
        wanted = ", ".join(f"{kind.artifact} ({kind.name})" for kind in self._kinds)
        raise ModelLoadError(f"{version_path} has no artifact to serve; looked for {wanted}")
