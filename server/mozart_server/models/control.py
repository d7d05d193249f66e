"""Model control: which versions should serve, kept in step with the repository.

Three modes, as Triton has them: `none` loads at start and never changes; `poll`
looks at the repository every `repository_poll_s` and loads new or changed
versions and unloads removed ones; `explicit` changes only when `load` or
`unload` is called (the model-control RPCs).

A version that fails to load never replaces one that serves. Under the `latest`
policy the newest versions that load serve, newest first, and each failure is
reported (log, `mozart_model_load_failures_total`, and `status()`). A failed
version is tried again only once its files change, so a broken upload does not
fill the log every poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from mozart_server.errors import FailedPreconditionError, ModelLoadError, NotFoundError
from mozart_server.models.loader import VersionLoader
from mozart_server.models.registry import ModelRegistry, ServingVersion
from mozart_server.models.repository import (
    Fingerprint,
    VersionDir,
    fingerprint,
    model_names,
    select_versions,
    version_dirs,
    version_key,
)
from mozart_server.models.rollout import RolloutStatus
from mozart_server.models.rollout_policy import ROLLOUT_FILE, RolloutPolicy
from mozart_server.observability.metrics import ServerMetrics
from mozart_server.settings import (
    ModelControlMode,
    Readiness,
    RepositorySettings,
    VersionPolicy,
)

logger = logging.getLogger(__name__)

UNLOADED = "unloaded"


class VersionState(StrEnum):
    """Where a version is in its lifecycle (Triton's RepositoryIndex states)."""

    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True)
class VersionStatus:
    """One version's state, and why it is UNAVAILABLE."""

    version: str
    state: VersionState
    reason: str = ""


@dataclass(frozen=True)
class ModelStatus:
    """Every version the server knows of for one model, oldest first."""

    name: str
    versions: tuple[VersionStatus, ...]


@dataclass
class _Record:
    """What control last did with one version folder."""

    state: VersionState
    reason: str
    fingerprint: Fingerprint
    failed: bool = False


ChangeListener = Callable[[], Awaitable[None]]
T = TypeVar("T")


class ModelControl:
    """Loads, reloads and unloads versions into the registry according to the control mode."""

    def __init__(
        self,
        settings: RepositorySettings,
        registry: ModelRegistry,
        loader: VersionLoader,
        metrics: ServerMetrics,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._loader = loader
        self._metrics = metrics
        self._records: dict[str, dict[str, _Record]] = {}
        self._wanted: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._listeners: list[ChangeListener] = []
        self._poller: asyncio.Task[None] | None = None
        self._operations: set[asyncio.Task[Any]] = set()

    @property
    def mode(self) -> ModelControlMode:
        """The control mode the server runs with."""
        return self._settings.model_control_mode

    def add_listener(self, listener: ChangeListener) -> None:
        """Awaits `listener` after every change of what serves (e.g. to update health)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Loads what the mode says to load at start; in `poll` mode, starts watching.

        Raises:
            ModelLoadError: only when the repository folder itself is missing.
        """
        on_disk = model_names(self._settings.model_repository)
        if self.mode is ModelControlMode.EXPLICIT:
            startup = self._settings.startup_models
            names = on_disk if "*" in startup else sorted(set(startup))
        else:
            names = on_disk
        for name in names:
            self._wanted.add(name)
            if name not in on_disk:
                logger.error("startup model is not in the repository", extra={"model": name})
                continue
            await self._sync(name, force=False)
        await self._changed()
        if self.mode is ModelControlMode.POLL:
            self._poller = asyncio.get_running_loop().create_task(
                self._poll_forever(), name="repository-poll"
            )

    async def poll_once(self) -> None:
        """Brings every model in step with the repository: new, changed and removed versions."""
        try:
            on_disk = set(model_names(self._settings.model_repository))
        except ModelLoadError as error:
            # A repository that vanished (say, an unmounted volume) must not unload everything.
            logger.error("cannot read the model repository", extra={"reason": str(error)})
            return
        for name in sorted(on_disk | self._wanted):
            if name in on_disk:
                self._wanted.add(name)
                await self._sync(name, force=False)
            else:
                self._wanted.discard(name)
                await self._unload(name)
        await self._changed()

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.repository_poll_s)
            try:
                await self.poll_once()
            except Exception:  # keep polling; the next round may succeed
                logger.exception("repository poll failed")

    def _check_explicit(self, action: str) -> None:
        if self.mode is not ModelControlMode.EXPLICIT:
            raise FailedPreconditionError(
                f"cannot {action} models: the server's model_control_mode is "
                f"{self.mode.value!r}; start it with model_control_mode=explicit "
                "(--model-control-mode explicit or MOZART_MODEL_CONTROL_MODE=explicit)"
            )

    async def load(self, name: str, reload: bool = False) -> ModelStatus:
        """Loads a model, or brings a loaded one up to date with the repository.

        Args:
            name: the model folder's name.
            reload: load every selected version again, even unchanged serving ones.

        Raises:
            FailedPreconditionError: not in explicit mode, or a selected version did not
                load (those that serve go on serving; the message names them).
            NotFoundError: the repository has no such model.
        """
        self._check_explicit("load")
        on_disk = model_names(self._settings.model_repository)
        if name not in on_disk:
            raise NotFoundError(f"the repository has no model {name!r} (it has: {on_disk})")
        self._wanted.add(name)
        failures = await self._finish(self._sync(name, force=reload))
        if failures:
            serving = [model.version for model in self._registry.versions(name)]
            if not serving:
                raise FailedPreconditionError(
                    f"no version of model {name!r} loaded: {'; '.join(failures)}"
                )
            raise FailedPreconditionError(
                f"model {name!r} did not load as asked: {'; '.join(failures)}; "
                f"versions {serving} serve on"
            )
        return self.status_of(name)

    async def unload(self, name: str) -> ModelStatus:
        """Unloads every version of a model; calls and streams on it finish first.

        Raises:
            FailedPreconditionError: not in explicit mode.
            NotFoundError: the model is not loaded.
        """
        self._check_explicit("unload")
        if name not in self._wanted and not self._registry.versions(name):
            raise NotFoundError(f"model {name!r} is not loaded (loaded: {self._registry.names()})")
        self._wanted.discard(name)
        await self._finish(self._unload(name))
        return self.status_of(name)

    async def _finish(self, operation: Coroutine[Any, Any, T]) -> T:
        """Runs a change, then tells the listeners, even if the caller goes away meanwhile."""

        async def change_then_notify() -> T:
            result = await operation
            await self._changed()
            return result

        task = asyncio.get_running_loop().create_task(change_then_notify())
        self._operations.add(task)
        task.add_done_callback(self._operations.discard)
        return await asyncio.shield(task)

    async def _unload(self, name: str) -> None:
        async with self._lock(name):
            serving = [model.version for model in self._registry.versions(name)]
            self._registry.swap(name, retired=serving)
            for version in serving:
                self._mark_unloaded(name, version)
            self._forget_removed(name)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _candidates(self, name: str) -> tuple[list[VersionDir], int]:
        """The versions to try, in order, and how many of them should serve."""
        settings = self._settings
        model_dir = settings.model_repository / name
        if settings.version_policy is VersionPolicy.LATEST:
            newest_first = [VersionDir(name, path.name, path)
                            for path in reversed(version_dirs(model_dir))]  # fmt: skip
            return newest_first, settings.latest_versions
        chosen = select_versions(
            model_dir, settings.version_policy, settings.latest_versions,
            settings.specific_versions,
        )  # fmt: skip
        return chosen, len(chosen)

    async def _sync(self, name: str, force: bool) -> list[str]:
        """Loads what should serve of one model and retires the rest, in one swap.

        Returns:
            "version V: reason" for each version tried that did not load, now or before
            (with unchanged files).
        """
        failures: list[str] = []
        async with self._lock(name):
            records = self._records.setdefault(name, {})
            serving = {model.version: model for model in self._registry.versions(name)}
            model_dir = self._settings.model_repository / name
            on_disk = [path.name for path in version_dirs(model_dir)]
            self._registry.router.policy_file_changed(name, model_dir / ROLLOUT_FILE, on_disk)
            candidates, wanted_count = self._candidates(name)
            kept: list[str] = []
            added: list[ServingVersion] = []

            async def bring_up(version_dir: VersionDir) -> None:
                version = version_dir.version
                current = fingerprint(version_dir.path)
                record = records.get(version)
                unchanged = record is not None and record.fingerprint == current
                if version in serving and unchanged and not force:
                    kept.append(version)
                    return
                if record is not None and record.failed and unchanged and not force:
                    failures.append(f"version {version}: {record.reason}")
                    return
                loaded = await self._load_version(version_dir, current, version in serving)
                if loaded is not None:
                    added.append(loaded)
                    return
                failures.append(f"version {version}: {records[version].reason}")
                if version in serving:
                    kept.append(version)  # the copy that loaded before keeps serving

            for version_dir in candidates:
                if len(kept) + len(added) >= wanted_count:
                    break
                await bring_up(version_dir)
            # A rollout serves every version it names, beside those the version policy picks.
            chosen = {*kept, *(model.version for model in added)}
            for version in sorted(self._registry.router.named_versions(name), key=version_key):
                if version not in chosen and version in on_disk:
                    await bring_up(VersionDir(name, version, model_dir / version))
            new = {model.version for model in added}
            retired = [version for version in serving if version not in kept and version not in new]
            self._registry.swap(name, added, retired)
            for version in retired:
                self._mark_unloaded(name, version)
            self._forget_removed(name)
        return failures

    async def _load_version(
        self, version_dir: VersionDir, current: Fingerprint, serving: bool
    ) -> ServingVersion | None:
        name, version = version_dir.name, version_dir.version
        records = self._records[name]
        records[version] = _Record(VersionState.LOADING, "", current)
        labels = {"model": name, "version": version}
        try:
            model = await self._loader.load(version_dir)
        except ModelLoadError as error:
            reason = str(error)
            self._metrics.model_load_failures.labels(**labels).inc()
            if serving:
                reason = f"a new copy failed to load, the loaded one serves: {reason}"
                records[version] = _Record(VersionState.READY, reason, current, failed=True)
            else:
                self._metrics.model_loaded.labels(**labels).set(0)
                records[version] = _Record(VersionState.UNAVAILABLE, reason, current, failed=True)
            logger.error("model version failed to load", extra={**labels, "reason": reason})
            return None
        records[version] = _Record(VersionState.READY, "", current)
        logger.info("model version loaded and warmed", extra=labels)
        return model

    def _mark_unloaded(self, name: str, version: str) -> None:
        record = self._records.setdefault(name, {}).get(version)
        fingerprint_now = record.fingerprint if record is not None else ()
        self._records[name][version] = _Record(VersionState.UNAVAILABLE, UNLOADED, fingerprint_now)

    def _forget_removed(self, name: str) -> None:
        on_disk = {path.name for path in version_dirs(self._settings.model_repository / name)}
        records = self._records.get(name, {})
        for version in [v for v in records if v not in on_disk]:
            if records[version].state is not VersionState.READY:
                del records[version]
        if not records and name not in self._wanted:
            self._records.pop(name, None)

    async def set_rollout(self, name: str, policy: RolloutPolicy | None) -> RolloutStatus | None:
        """Sets (None: clears) a model's rollout, then loads every version it names.

        In every control mode: a rollout needs its versions loaded. The policy set here
        holds until the model's rollout.toml changes or another is set.

        Raises:
            NotFoundError: the repository has no such model.
            InvalidArgumentError: the policy does not fit the model's versions.
        """
        on_disk_models = model_names(self._settings.model_repository)
        if name not in on_disk_models:
            raise NotFoundError(f"the repository has no model {name!r} (it has: {on_disk_models})")
        on_disk = [path.name for path in version_dirs(self._settings.model_repository / name)]
        self._registry.router.set_policy(name, policy, on_disk, "api")
        failures = await self._finish(self._sync(name, force=False))
        if failures:
            logger.error(
                "a version the rollout names did not load; calls go to those that serve",
                extra={"model": name, "failures": failures},
            )
        return self._registry.router.status(name)

    def rollout_status(self, name: str) -> RolloutStatus | None:
        """A model's rollout now (None without one).

        Raises:
            NotFoundError: the server knows no such model.
        """
        if not self.knows(name):
            raise NotFoundError(f"the server knows no model {name!r}")
        return self._registry.router.status(name)

    def status_of(self, name: str) -> ModelStatus:
        """The state of every version of a model that the server knows of."""
        entries: dict[str, VersionStatus] = {
            version: VersionStatus(version, record.state, record.reason)
            for version, record in self._records.get(name, {}).items()
        }
        for model in self._registry.draining(name):
            entries[model.version] = VersionStatus(model.version, VersionState.UNLOADING)
        for model in self._registry.versions(name):
            reason = entries[model.version].reason if model.version in entries else ""
            entries[model.version] = VersionStatus(model.version, VersionState.READY, reason)
        ordered = sorted(entries.values(), key=lambda entry: version_key(entry.version))
        return ModelStatus(name, tuple(ordered))

    def status(self) -> list[ModelStatus]:
        """Every model the server knows of (in the repository, wanted or serving), by name."""
        try:
            on_disk = set(model_names(self._settings.model_repository))
        except ModelLoadError:
            on_disk = set()
        names = on_disk | self._wanted | set(self._records) | set(self._registry.names())
        return [self.status_of(name) for name in sorted(names)]

    def knows(self, name: str) -> bool:
        """Whether `name` is a model the server knows of (see `status`)."""
        return any(status.name == name for status in self.status())

    def ready(self) -> bool:
        """Whether health should say SERVING, by the readiness setting."""
        serving = self._registry.names()
        if self._settings.readiness is Readiness.ANY:
            return bool(serving)
        return bool(self._wanted) and all(self._registry.versions(n) for n in self._wanted)

    def not_ready_reasons(self) -> list[str]:
        """Why `ready()` is false: each wanted model with no serving version, and why."""
        reasons = []
        for name in sorted(self._wanted):
            if not self._registry.versions(name):
                failures = [f"{entry.version}: {entry.reason}"
                            for entry in self.status_of(name).versions if entry.reason]  # fmt: skip
                reasons.append(f"{name} has no serving version ({'; '.join(failures) or 'none'})")
        return reasons or ["no model is loaded"]

    async def _changed(self) -> None:
        for listener in self._listeners:
            await listener()

    async def aclose(self) -> None:
        """Stops polling and changes in progress (an engine being loaded closes when done)."""
        tasks = [*self._operations, *([self._poller] if self._poller else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._poller = None
