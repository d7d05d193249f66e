"""Chooses the artifact that serves a model version, and builds its engine.

A version can be served from `model.onnx` (the FP32 reference) or from an artifact that
`mozart optimize` admitted and listed in model.json. The `engine` setting (per model
through `model_engines`) narrows the choice to a precision or to TensorRT; `auto` takes
every artifact this machine can run. Among those left, the one with the best recorded
throughput serves, and the choice is logged. Each engine kind imports its runtime only
when it is asked about an artifact, so a runtime that is not installed costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mozart_server.engines.artifacts import ONNXRUNTIME, REFERENCE, TENSORRT, Artifact
from mozart_server.engines.base import Engine
from mozart_server.errors import ModelLoadError
from mozart_server.settings import EngineChoice, EngineSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineKind:
    """One kind of engine: how to build it, and why this machine cannot run an artifact."""

    name: str
    build: Callable[[Path, Artifact, EngineSettings], Engine]
    #: None when the artifact can run here, else the reason it cannot.
    unavailable: Callable[[Artifact, EngineSettings], str | None]


def _build_onnx(path: Path, artifact: Artifact, settings: EngineSettings) -> Engine:
    from mozart_server.engines.onnx import OnnxEngine  # noqa: PLC0415 - imported when used

    return OnnxEngine(path, settings.onnx, artifact)


def _onnx_unavailable(artifact: Artifact, settings: EngineSettings) -> str | None:
    # An optimized graph's figures hold for the provider it was measured on; the FP32
    # reference runs wherever the configured providers do.
    running = settings.onnx.providers[0]
    if artifact != REFERENCE and artifact.provider != running:
        return f"measured on {artifact.provider}, this server runs {running}"
    return None


def _build_tensorrt(path: Path, artifact: Artifact, settings: EngineSettings) -> Engine:
    from mozart_server.engines.tensorrt import TensorRTEngine  # noqa: PLC0415

    return TensorRTEngine(path, settings.tensorrt, artifact)


def _tensorrt_unavailable(artifact: Artifact, settings: EngineSettings) -> str | None:
    from mozart_server.engines.tensorrt import unavailable_reason  # noqa: PLC0415

    return unavailable_reason(artifact, settings.tensorrt)


ENGINE_KINDS = (
    EngineKind(ONNXRUNTIME, _build_onnx, _onnx_unavailable),
    EngineKind(TENSORRT, _build_tensorrt, _tensorrt_unavailable),
)


def _wanted(artifact: Artifact, choice: EngineChoice) -> bool:
    if choice is EngineChoice.AUTO:
        return True
    if choice is EngineChoice.TENSORRT:
        return artifact.kind == TENSORRT
    return artifact.kind == ONNXRUNTIME and artifact.precision == choice.value


class EngineFactory:
    """Builds the engine of each version from its artifacts and the engine settings."""

    def __init__(self, settings: EngineSettings, kinds: Sequence[EngineKind] = ENGINE_KINDS):
        """Keeps the settings and the engine kinds by name."""
        self._settings = settings
        self._kinds = {kind.name: kind for kind in kinds}

    def choose(self, model: str, version_path: Path, artifacts: Sequence[Artifact]) -> Artifact:
        """The artifact that serves this version: the fastest wanted one that runs here.

        Raises:
            ModelLoadError: no artifact fits the engine choice on this machine; the message
                gives each candidate's reason.
        """
        choice = self._settings.choice_for(model)
        usable: list[Artifact] = []
        passed_over: dict[str, str] = {}
        for artifact in (REFERENCE, *artifacts):
            if not _wanted(artifact, choice):
                continue
            reason = self._unavailable(artifact, version_path)
            if reason is None:
                usable.append(artifact)
            else:
                passed_over[artifact.file] = reason
        if not usable:
            found = "; ".join(f"{file}: {why}" for file, why in passed_over.items())
            hint = found or f"model.json lists no {choice.value} artifact (run mozart optimize)"
            raise ModelLoadError(
                f"{version_path} has no artifact for engine={choice.value} that runs here: {hint}"
            )
        # max() keeps the first of equals, so the reference wins a tie.
        chosen = max(usable, key=lambda artifact: artifact.throughput_ratio)
        logger.info(
            "engine chosen",
            extra={
                "model": model,
                "path": str(version_path),
                "engine_choice": choice.value,
                "artifact": chosen.file,
                "precision": chosen.precision,
                "throughput_ratio": chosen.throughput_ratio,
                "passed_over": passed_over,
            },
        )
        return chosen

    def _unavailable(self, artifact: Artifact, version_path: Path) -> str | None:
        kind = self._kinds.get(artifact.kind)
        if kind is None:
            return f"no engine of kind {artifact.kind!r} in this server"
        try:
            artifact.check_file(version_path)
        except (OSError, ValueError) as error:
            return str(error)
        return kind.unavailable(artifact, self._settings)

    def create(self, model: str, version_path: Path, artifacts: Sequence[Artifact] = ()) -> Engine:
        """Builds the engine of the artifact `choose` picks.

        Raises:
            ModelLoadError: no artifact fits, or the engine cannot load the chosen one.
        """
        artifact = self.choose(model, version_path, artifacts)
        return self._kinds[artifact.kind].build(
            version_path / artifact.file, artifact, self._settings
        )
