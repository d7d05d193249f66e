"""Loading one model version: read its manifest, build its engine, check it, warm it up.

The blocking part runs in a worker thread, so the event loop keeps serving while a
version loads; the version takes traffic only once `load` returns it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np

from mozart_server.batching.batcher import BatcherConfig, DynamicBatcher
from mozart_server.engines import Engine, EngineFactory
from mozart_server.engines.split import FrameGeometry, span_frames
from mozart_server.errors import ModelLoadError
from mozart_server.models.manifest import (
    Manifest,
    check_against_graph,
    read_manifest,
)
from mozart_server.models.registry import ServingVersion
from mozart_server.models.repository import VersionDir
from mozart_server.observability.drift import (
    DriftConfig,
    DriftMonitor,
    DriftScheduler,
    FrontEnd,
    ReferenceStats,
)
from mozart_server.observability.metrics import ServerMetrics
from mozart_server.tensors import FloatArray

logger = logging.getLogger(__name__)


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


def warm_up(engine: Engine, manifest: Manifest, batch_sizes: Sequence[int]) -> None:
    """Runs every batch size on every engine instance and checks the scores' shape and values.

    Raises:
        ModelLoadError: a wrong shape or non-finite scores.
    """
    for batch_size in sorted(set(batch_sizes)):
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


def drift_reference(manifest: Manifest) -> tuple[ReferenceStats, FrontEnd] | None:
    """The drift reference of a version: None when model.json has no usable reference_stats.

    A version without them (or with a front end the server cannot reproduce) serves
    without drift scores; the reason is logged.
    """
    labels = {"model": manifest.name, "version": manifest.version}
    try:
        reference = ReferenceStats.from_manifest(manifest.reference_stats, manifest.labels)
        if reference is None:
            logger.info("no reference_stats in model.json: no drift scores", extra=labels)
            return None
        front_end = FrontEnd.from_manifest(manifest.front_end, manifest.sample_rate_hz)
    except ValueError as error:
        logger.warning(
            "reference_stats unusable: no drift scores", extra={**labels, "reason": str(error)}
        )
        return None
    return reference, front_end


def frame_geometry(manifest: Manifest, engine: Engine) -> tuple[FrameGeometry | None, str]:
    """The frames streams and overlapping clips may share, or None; and why not.

    The engine must be split, model.json's ``front_end`` must give ``n_fft`` and
    ``hop_length``, and the engine's frames must lie where they say, bit for bit (see
    FrameGeometry): the window's frame count; the fewest frames one run may compute and
    still give the window's last frames exactly (`min_run_frames`); and a long run cut
    into pieces (`span_frames`, as clips compute theirs) gives every window's frames.
    """
    if not engine.split:
        return None, engine.split_note
    try:
        n_fft = int(manifest.front_end["n_fft"])
        hop = int(manifest.front_end["hop_length"])
        if n_fft <= 0 or hop <= 0:
            raise ValueError(hop)
    except (KeyError, TypeError, ValueError):
        return None, "model.json's front_end gives no positive n_fft and hop_length"
    window = manifest.window_samples
    frames = 1 + (window - n_fft) // hop
    probe = (0.1 * np.random.default_rng(1).standard_normal(3 * window)).astype(np.float32)
    try:
        mel = engine.features(probe[np.newaxis, :window])
        if mel.shape[-1] != frames:
            return None, (
                f"the front end gives {mel.shape[-1]} frames per window; n_fft {n_fft} and "
                f"hop_length {hop} make {frames}"
            )
        fewest = _min_run_frames(engine, mel, probe, n_fft, hop)
        geometry = FrameGeometry(n_fft, hop, frames, fewest)
        computed = span_frames(engine.features, geometry, probe)
        for start in (1, 37, frames, frames + 13):
            own = engine.features(probe[np.newaxis, start * hop : start * hop + window])
            if not np.array_equal(own, computed[..., start : start + frames]):
                return None, "a long run's frames are not each window's own, bit for bit"
    except Exception as error:  # the runtime's own failure types
        return None, f"the front end does not run on part of a window: {error}"
    return geometry, f"{engine.split_note}; runs of {geometry.min_run_frames}+ frames are exact"


def _min_run_frames(
    engine: Engine, mel: FloatArray, probe: FloatArray, n_fft: int, hop: int
) -> int:
    """The fewest frames from which every run up to a window's is exact, bit for bit."""
    frames = int(mel.shape[-1])
    fewest = frames
    for count in range(frames - 1, 0, -1):
        start = (frames - count) * hop
        run = engine.features(probe[np.newaxis, start : start + (count - 1) * hop + n_fft])
        if not np.array_equal(run, mel[..., frames - count :]):
            break
        fewest = count
    return fewest


def _log_front_end(manifest: Manifest, geometry: FrameGeometry | None, note: str) -> None:
    labels = {"model": manifest.name, "version": manifest.version, "front_end": note}
    if geometry is None:
        logger.warning("front end not split: windows run the full graph", extra=labels)
    else:
        logger.info("front end split: streams and overlapping clips share mel frames", extra=labels)


# What the worker thread hands back: the manifest, the warmed engine, its frame geometry,
# the drift reference.
_Loaded = tuple[Manifest, Engine, FrameGeometry | None, tuple[ReferenceStats, FrontEnd] | None]


class VersionLoader:
    """Turns a version folder into a warmed ServingVersion with its own batcher."""

    def __init__(
        self,
        engines: EngineFactory,
        batching: BatcherConfig,
        metrics: ServerMetrics,
        drift: tuple[DriftScheduler, DriftConfig] | None = None,
    ) -> None:
        self._engines = engines
        self._batching = batching
        self._metrics = metrics
        self._drift = drift

    def _load_blocking(self, version_dir: VersionDir) -> _Loaded:
        manifest = read_manifest(version_dir)
        reference = None if self._drift is None else drift_reference(manifest)
        engine = self._engines.create(manifest.name, version_dir.path, manifest.artifacts)
        self._metrics.engines_open.inc()
        try:
            check_against_graph(manifest, engine.inputs, engine.outputs)
            warm_up(engine, manifest, self._batching.preferred_batch_sizes)
            geometry, note = frame_geometry(manifest, engine)
        except BaseException:
            engine.close()
            self._metrics.engines_open.dec()
            raise
        _log_front_end(manifest, geometry, note)
        return manifest, engine, geometry, reference

    def _discard(self, loading: asyncio.Future[_Loaded]) -> None:
        if not loading.cancelled() and loading.exception() is None:
            loading.result()[1].close()
            self._metrics.engines_open.dec()

    async def load(self, version_dir: VersionDir) -> ServingVersion:
        """Loads, checks and warms one version off the event loop; starts its batcher.

        Raises:
            ModelLoadError: with the reason the version cannot serve.
        """
        loading = asyncio.ensure_future(asyncio.to_thread(self._load_blocking, version_dir))
        try:
            manifest, engine, geometry, reference = await asyncio.shield(loading)
        except asyncio.CancelledError:
            # The thread cannot be stopped: close what it builds once it is done.
            loading.add_done_callback(self._discard)
            raise
        except ModelLoadError:
            raise
        except Exception as error:  # an engine's own failure types, e.g. a runtime bug
            raise ModelLoadError(f"{version_dir.path} failed to load: {error}") from error
        batcher = DynamicBatcher(
            engine,
            self._batching,
            self._metrics,
            manifest.name,
            manifest.version,
            observer=self._drift_monitor(manifest, reference),
            frames=geometry,
        )
        batcher.start()
        return ServingVersion(manifest, engine, batcher)

    def _drift_monitor(
        self, manifest: Manifest, found: tuple[ReferenceStats, FrontEnd] | None
    ) -> DriftMonitor | None:
        if self._drift is None or found is None:
            return None
        scheduler, config = self._drift
        reference, front_end = found
        try:
            return scheduler.monitor(
                reference, front_end, config, {"model": manifest.name, "version": manifest.version}
            )
        except ValueError as error:
            logger.warning(
                "reference_stats unusable: no drift scores",
                extra={"model": manifest.name, "version": manifest.version, "reason": str(error)},
            )
            return None
