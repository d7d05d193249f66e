"""The native TensorRT engine (model.plan). Imported only when a version lists a plan."""

from __future__ import annotations

import importlib.util

from mozart_server.engines.artifacts import Artifact
from mozart_server.settings import TensorRTSettings


def unavailable_reason(artifact: Artifact, settings: TensorRTSettings) -> str | None:
    """Why this machine cannot run the plan, or None when it can."""
    del artifact, settings
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed here (pip package tensorrt, from NVIDIA's index)"
    return "the native TensorRT engine is not built yet"


class TensorRTEngine:
    """Placeholder until the native engine lands: refuses to load."""

    def __init__(self, plan: object, settings: TensorRTSettings, artifact: Artifact) -> None:
        """Raises ModelLoadError."""
        from mozart_server.errors import ModelLoadError  # noqa: PLC0415

        raise ModelLoadError(f"cannot serve {plan}: {unavailable_reason(artifact, settings)}")
