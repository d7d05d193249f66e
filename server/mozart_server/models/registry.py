"""The live registry: which versions serve now, leases on them, and swaps that drain.

Every call and stream that uses a version holds a lease on it for as long as it
runs. A swap makes new versions serving and retires old ones in one step on the
event loop: new calls get the new versions at once, while a retired version keeps
its batcher and engine until its last lease ends, and only then closes. So nothing
in flight fails because a version changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from mozart_server.batching.batcher import DynamicBatcher
from mozart_server.engines import Engine
from mozart_server.errors import MozartError, NotFoundError
from mozart_server.models.manifest import Manifest
from mozart_server.models.repository import version_key
from mozart_server.models.rollout import RolloutRouter
from mozart_server.observability.metrics import ServerMetrics

logger = logging.getLogger(__name__)


@dataclass
class CallStatistics:
    """Calls that held a version: how many succeeded or failed, and for how long in all."""

    success: int = 0
    success_s: float = 0.0
    failed: int = 0
    failed_s: float = 0.0
    last_call_unix_ms: int = 0

    def record(self, succeeded: bool, duration_s: float) -> None:
        """Counts one finished call."""
        if succeeded:
            self.success += 1
            self.success_s += duration_s
        else:
            self.failed += 1
            self.failed_s += duration_s
        # The protocol reports this as wall-clock time; durations above use the monotonic clock.
        self.last_call_unix_ms = int(time.time() * 1000)


class ServingVersion:
    """One loaded, warmed model version: its manifest, engine and batcher, and its leases."""

    def __init__(self, manifest: Manifest, engine: Engine, batcher: DynamicBatcher) -> None:
        self.manifest = manifest
        self.engine = engine
        self.batcher = batcher
        self.calls = CallStatistics()
        self.leases = 0
        self.retired = False
        self.closing = False

    @property
    def name(self) -> str:
        """The model's name."""
        return self.manifest.name

    @property
    def version(self) -> str:
        """The version's name."""
        return self.manifest.version

    @property
    def engine_labels(self) -> tuple[str, ...]:
        """Label values of mozart_model_engine_info: what serves this version, and where."""
        engine, artifact = self.engine, self.engine.artifact
        return (self.name, self.version, engine.kind, artifact.precision, artifact.file,
                engine.device)  # fmt: skip

    def __repr__(self) -> str:
        return f"ServingVersion({self.name}/{self.version}, leases={self.leases})"


@dataclass(frozen=True)
class RegistryChange:
    """What one swap did to a model: versions that began and stopped serving."""

    name: str
    added: tuple[str, ...]
    retired: tuple[str, ...]


RegistryListener = Callable[[RegistryChange], None]


class ModelRegistry:
    """Serving versions by model name; the one place the layers above look models up."""

    def __init__(self, metrics: ServerMetrics, router: RolloutRouter | None = None) -> None:
        self._metrics = metrics
        self.router = router if router is not None else RolloutRouter(metrics)
        self._serving: dict[str, dict[str, ServingVersion]] = {}
        self._draining: set[ServingVersion] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._listeners: list[RegistryListener] = []

    def add_listener(self, listener: RegistryListener) -> None:
        """Calls `listener` after every swap that changed something (load, reload, unload)."""
        self._listeners.append(listener)

    def resolve(
        self, name: str, version: str = "", routing_key: str | None = None
    ) -> ServingVersion:
        """Returns a serving version; an empty version means the newest.

        With `routing_key` (a call to be served, "" when the caller gave none), an empty
        version is chosen by the model's rollout, if it has one (see models.rollout).

        Raises:
            NotFoundError: the model or that version is not serving.
        """
        versions = self._serving.get(name)
        if not versions:
            raise NotFoundError(f"model {name!r} is not loaded (loaded: {self.names()})")
        if not version and routing_key is not None:
            version = self.router.choose(name, versions, routing_key)
        if not version:
            return versions[max(versions, key=version_key)]
        model = versions.get(version)
        if model is None:
            raise NotFoundError(
                f"model {name!r} has no serving version {version!r} "
                f"(serving: {sorted(versions, key=version_key)})"
            )
        return model

    @contextlib.contextmanager
    def lease(
        self, name: str, version: str = "", routing_key: str = "", *, judged: bool = True
    ) -> Iterator[ServingVersion]:
        """Holds a serving version for the length of a call or stream.

        The version stays open until the lease ends, even if a swap retires it meanwhile.
        The call's outcome and duration are counted in the version's `calls`, and, when
        `judged` (unary calls; streams record each window themselves), in its rollout.

        Raises:
            NotFoundError: the model or that version is not serving.
        """
        model = self.resolve(name, version, routing_key)
        model.leases += 1
        self._metrics.version_leases.inc()
        started = time.monotonic()
        succeeded = False
        code = ""  # stays empty when the call is cancelled: not the version's doing
        try:
            yield model
            succeeded = True
            code = "OK"
        except MozartError as error:
            code = error.status_code.name
            raise
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            duration_s = time.monotonic() - started
            model.calls.record(succeeded, duration_s)
            if judged and code:
                self.router.record(name, model.version, code, duration_s)
            model.leases -= 1
            self._metrics.version_leases.dec()
            if model.retired and model.leases == 0:
                self._close_later(model)

    def names(self) -> list[str]:
        """Names of the serving models, sorted."""
        return sorted(self._serving)

    def versions(self, name: str) -> list[ServingVersion]:
        """Serving versions of a model, oldest first (empty if unknown)."""
        versions = self._serving.get(name, {})
        return [versions[key] for key in sorted(versions, key=version_key)]

    def all_models(self) -> list[ServingVersion]:
        """Every serving version."""
        return [model for name in self.names() for model in self.versions(name)]

    def draining(self, name: str) -> list[ServingVersion]:
        """Retired versions of a model that still finish calls and streams."""
        return sorted(
            (model for model in self._draining if model.name == name),
            key=lambda model: version_key(model.version),
        )

    def swap(
        self, name: str, added: Sequence[ServingVersion] = (), retired: Sequence[str] = ()
    ) -> None:
        """Makes `added` serve and retires the versions named in `retired`, in one step.

        A version added under a name that is serving replaces it (a reload). Retired
        versions close once their last lease ends.
        """
        versions = self._serving.setdefault(name, {})
        replaced = [versions[model.version] for model in added if model.version in versions]
        removed = [versions.pop(version) for version in retired if version in versions]
        for model in added:
            versions[model.version] = model
        if not versions:
            del self._serving[name]
        for model in (*replaced, *removed):
            self._retire(model)
        for model in added:
            self._metrics.model_loaded.labels(model=name, version=model.version).set(1)
            self._metrics.model_engine_info.labels(*model.engine_labels).set(1)
        for model in removed:
            self._metrics.model_loaded.labels(model=name, version=model.version).set(0)
        change = RegistryChange(
            name,
            tuple(model.version for model in added),
            tuple(model.version for model in (*replaced, *removed)),
        )
        if not (change.added or change.retired):
            return
        self._metrics.model_swaps.labels(model=name).inc()
        logger.info(
            "serving versions changed",
            extra={"model": name, "added": list(change.added),
                   "retired": list(change.retired),
                   "serving": [model.version for model in self.versions(name)]},
        )  # fmt: skip
        for listener in self._listeners:
            listener(change)

    def _retire(self, model: ServingVersion) -> None:
        model.retired = True
        self._metrics.model_engine_info.remove(*model.engine_labels)
        self._draining.add(model)
        if model.leases == 0:
            self._close_later(model)

    def _close_later(self, model: ServingVersion) -> None:
        if model.closing:
            return
        model.closing = True
        task = asyncio.get_running_loop().create_task(
            self._close(model), name=f"close-{model.name}-{model.version}"
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, model: ServingVersion) -> None:
        try:
            await model.batcher.aclose()
        finally:
            model.engine.close()
            self._metrics.engines_open.dec()
            self._draining.discard(model)
            logger.info(
                "model version closed", extra={"model": model.name, "version": model.version}
            )

    async def aclose(self) -> None:
        """Retires every version, lets queued work finish, then closes the engines."""
        for name in self.names():
            self.swap(name, retired=[model.version for model in self.versions(name)])
        # Versions still leased at shutdown (calls the server could not finish) close now.
        for model in list(self._draining):
            self._close_later(model)
        while self._closing:
            await asyncio.gather(*self._closing)
