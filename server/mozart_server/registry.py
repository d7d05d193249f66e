"""The models being served: loading, checking and warming each version, and looking them up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mozart_server.batcher import BatcherConfig, DynamicBatcher
from mozart_server.engine import Engine, FloatArray
from mozart_server.errors import ModelLoadError, NotFoundError
from mozart_server.metrics import ServerMetrics
from mozart_server.onnx_engine import OnnxEngine
from mozart_server.repository import (
    Manifest,
    VersionDir,
    check_against_graph,
    discover,
    read_manifest,
)
from mozart_server.settings import ServerSettings

logger = logging.getLogger(__name__)

EngineFactory = Callable[[VersionDir, ServerSettings], Engine]


@dataclass(frozen=True)
class ServingModel:
    """One loaded, warmed model version and the batcher in front of its engine."""

    manifest: Manifest
    engine: Engine
    batcher: DynamicBatcher

    @property
    def name(self) -> str:
        """The model's name."""
        return self.manifest.name

    @property
    def version(self) -> str:
        """The version's name."""
        return self.manifest.version


@dataclass(frozen=True)
class LoadFailure:
    """A version that did not load, and why."""

    name: str
    version: str
    reason: str


class ModelRegistry:
    """Serving model versions by name; the one place servicers look models up."""

    def __init__(self) -> None:
        self._models: dict[str, dict[str, ServingModel]] = {}
        self.failures: list[LoadFailure] = []

    def add(self, model: ServingModel) -> None:
        """Adds a loaded version."""
        self._models.setdefault(model.name, {})[model.version] = model

    def resolve(self, name: str, version: str = "") -> ServingModel:
        """Returns a serving version; an empty version means the newest.

        Raises:
            NotFoundError: the model or that version is not loaded.
        """
        versions = self._models.get(name)
        if not versions:
            raise NotFoundError(f"model {name!r} is not loaded (loaded: {sorted(self._models)})")
        if not version:
            return versions[max(versions, key=_version_key)]
        model = versions.get(version)
        if model is None:
            raise NotFoundError(
                f"model {name!r} has no serving version {version!r} "
                f"(serving: {sorted(versions, key=_version_key)})"
            )
        return model

    def names(self) -> list[str]:
        """Names of the serving models, sorted."""
        return sorted(self._models)

    def versions(self, name: str) -> list[ServingModel]:
        """Serving versions of a model, oldest first (empty if unknown)."""
        versions = self._models.get(name, {})
        return [versions[key] for key in sorted(versions, key=_version_key)]

    def all_models(self) -> list[ServingModel]:
        """Every serving version."""
        return [model for name in self.names() for model in self.versions(name)]

    def start(self) -> None:
        """Starts every batcher on the running event loop."""
        for model in self.all_models():
            model.batcher.start()

    async def aclose(self) -> None:
        """Finishes queued work in every batcher, then releases the engines."""
        models = self.all_models()
        await asyncio.gather(*(model.batcher.aclose() for model in models))
        for model in models:
            model.engine.close()


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (-1, version)


def onnx_engine_factory(version_dir: VersionDir, settings: ServerSettings) -> Engine:
    """Creates the ONNX Runtime engine of a version."""
    return OnnxEngine(version_dir.model_file, settings)


def warmup_audio(manifest: Manifest, batch_size: int) -> FloatArray:
    """Music-like warm-up windows: a decaying chord with harmonics and a little noise."""
    rate = manifest.sample_rate_hz
    t = np.arange(manifest.window_samples, dtype=np.float32) / rate
    generator = np.random.default_rng(0)
    rows = []
    for row in range(batch_size):
        root = 110.0 * 2 ** (row % 12 / 12)
        tone = sum(
            np.sin(2 * np.pi * root * ratio * harmonic * t) / harmonic
            for ratio in (1.0, 1.25, 1.5)
            for harmonic in (1, 2, 3)
        )
        envelope = np.exp(-2.0 * (t % 0.5))
        noise = generator.normal(0, 0.01, t.shape)
        rows.append(0.1 * tone * envelope + noise)
    return np.asarray(rows, dtype=np.float32)


def _load_version(
    version_dir: VersionDir, settings: ServerSettings, engine_factory: EngineFactory
) -> tuple[Manifest, Engine]:
    """Reads, checks and warms one version (blocking; runs in a worker thread)."""
    manifest = read_manifest(version_dir)
    engine = engine_factory(version_dir, settings)
    try:
        check_against_graph(manifest, engine.inputs, engine.outputs)
        for batch_size in sorted(set(settings.preferred_batch_sizes)):
            for _ in range(engine.instances):
                outputs = engine.run(warmup_audio(manifest, batch_size))
                expected = (batch_size, len(manifest.labels))
                if outputs.probabilities.shape != expected:
                    raise ModelLoadError(
                        f"warm-up at batch {batch_size} gave probabilities of shape "
                        f"{outputs.probabilities.shape}, expected {expected}"
                    )
                if not np.all(np.isfinite(outputs.probabilities)):
                    raise ModelLoadError(f"warm-up at batch {batch_size} gave non-finite scores")
    except Exception:
        engine.close()
        raise
    return manifest, engine


async def load_models(
    registry: ModelRegistry,
    settings: ServerSettings,
    metrics: ServerMetrics,
    engine_factory: EngineFactory = onnx_engine_factory,
) -> None:
    """Loads every version the policy selects into `registry`; failures are reported, skipped.

    Raises:
        ModelLoadError: only when the repository folder itself is missing.
    """
    config = BatcherConfig(
        max_batch_size=settings.max_batch_size,
        max_queue_delay_us=settings.max_queue_delay_us,
        preferred_batch_sizes=tuple(settings.preferred_batch_sizes),
        max_queue_windows=settings.max_queue_windows,
    )
    version_dirs = discover(
        settings.model_repository,
        settings.version_policy,
        settings.latest_versions,
        settings.specific_versions,
    )
    for version_dir in version_dirs:
        labels = {"model": version_dir.name, "version": version_dir.version}
        try:
            manifest, engine = await asyncio.to_thread(
                _load_version, version_dir, settings, engine_factory
            )
        except ModelLoadError as error:
            registry.failures.append(LoadFailure(version_dir.name, version_dir.version, str(error)))
            metrics.model_loaded.labels(**labels).set(0)
            logger.error("model version failed to load", extra={**labels, "reason": str(error)})
            continue
        batcher = DynamicBatcher(engine, config, metrics, manifest.name, manifest.version)
        registry.add(ServingModel(manifest, engine, batcher))
        metrics.model_loaded.labels(**labels).set(1)
        logger.info("model version loaded and warmed", extra=labels)
