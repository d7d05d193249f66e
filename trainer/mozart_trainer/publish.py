"""Publishing: an MLflow run or registry alias becomes the next model repository version.

`mozart models publish` and `mozart train --publish` both come here. The version
folder is assembled under a hidden name inside ``<repository>/<name>/`` (the
server skips folders whose name is not a number) and renamed into place, so a
polling server sees either no new version or all of its files; an existing
version is never written to.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mozart_trainer.card import card_for_version
from mozart_trainer.manifest import ModelManifest
from mozart_trainer.tracking import SERVER_FILES_ARTIFACT

#: Files copied from the run's ``model/`` artifacts; the first two are required.
VERSION_FILES = ("model.onnx", "model.json", "MODEL_CARD.md")
_REGISTRY_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
_REGISTRY_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
_RUN = re.compile(r"^(runs:/)?(?P<run_id>[0-9a-f]{32})/?$")

logger = logging.getLogger(__name__)


class PublishError(ValueError):
    """The source cannot be published: unknown, without model files, or a version clash."""


@dataclass(frozen=True)
class Published:
    """A version written to the model repository, and where it came from."""

    folder: Path
    name: str
    version: int
    source: str
    run_id: str
    registered: str | None
    """``<registered model> v<version>`` when the source was a registry version."""
    promotion: str | None
    """The run's ``promotion_reason`` tag: why it became champion (or did not)."""
    metric: str | None
    value: float | None
    """The run's promote metric (``tracking.promote_metric``) and its value."""


def _resolve(client: MlflowClient, source: str) -> tuple[str, ModelVersion | None]:
    """The run id behind ``source`` and the registry version when it names one."""
    try:
        if match := _REGISTRY_ALIAS.match(source):
            version = client.get_model_version_by_alias(match["name"], match["alias"])
        elif match := _REGISTRY_VERSION.match(source):
            version = client.get_model_version(match["name"], match["version"])
        elif match := _RUN.match(source):
            return client.get_run(match["run_id"]).info.run_id, None
        else:
            raise PublishError(
                f"source {source!r} is not models:/NAME@ALIAS, models:/NAME/VERSION "
                "or a 32-character run id"
            )
    except MlflowException as error:
        raise PublishError(f"{source}: {error.message}") from error
    if not version.run_id:
        raise PublishError(f"{source} (version {version.version}) records no MLflow run")
    return version.run_id, version


def next_version(model_dir: Path) -> int:
    """One more than the highest numbered version folder (1 for a new model)."""
    numbers = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(numbers, default=0) + 1


def publish(
    source: str,
    repository: Path,
    name: str | None = None,
    tracking_uri: str | None = None,
) -> Published:
    """Writes ``<repository>/<name>/<N+1>/`` from a run's model files, atomically.

    Args:
        source: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, a run id or ``runs:/RUN_ID``.
        repository: the model repository folder (created when missing).
        name: the model folder; default: the name in the run's model.json.
        tracking_uri: the MLflow store; default: the one MLflow is pointed at.

    Raises:
        PublishError: unknown source, a run without model files, or the version
            folder appearing while this one was assembled (nothing is overwritten).
    """
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    run_id, registry_version = _resolve(client, source)
    run = client.get_run(run_id)
    with tempfile.TemporaryDirectory(prefix="mozart-publish-") as download:
        try:
            fetched = Path(
                mlflow.artifacts.download_artifacts(
                    run_id=run_id,
                    artifact_path=SERVER_FILES_ARTIFACT,
                    dst_path=download,
                    tracking_uri=client.tracking_uri,
                )
            )
        except (MlflowException, OSError) as error:
            raise PublishError(f"run {run_id} has no {SERVER_FILES_ARTIFACT}/ artifacts") from error
        for required in VERSION_FILES[:2]:
            if not (fetched / required).is_file():
                raise PublishError(f"run {run_id}: {SERVER_FILES_ARTIFACT}/{required} is missing")
        logged = ModelManifest.read(fetched / "model.json")
        name = name or logged.name
        model_dir = repository / name
        model_dir.mkdir(parents=True, exist_ok=True)
        version = next_version(model_dir)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.publishing-", dir=model_dir))
        try:
            shutil.copy2(fetched / "model.onnx", staging / "model.onnx")
            # The server wants name and version equal to the folder's.
            logged.model_copy(update={"name": name, "version": str(version)}).write(
                staging / "model.json"
            )
            if (fetched / "MODEL_CARD.md").is_file():
                card = card_for_version(
                    (fetched / "MODEL_CARD.md").read_text(), logged, name, str(version)
                )
                (staging / "MODEL_CARD.md").write_text(card)
            folder = model_dir / str(version)
            if folder.exists():
                raise PublishError(f"{folder} appeared while publishing; nothing was overwritten")
            try:
                # Renaming onto a folder with files fails, so an existing version stays as it is.
                os.rename(staging, folder)
            except OSError as error:
                raise PublishError(
                    f"{folder} appeared while publishing; nothing was overwritten"
                ) from error
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    metric = run.data.params.get("tracking.promote_metric")
    published = Published(
        folder=folder,
        name=name,
        version=version,
        source=source,
        run_id=run_id,
        registered=(
            f"{registry_version.name} v{registry_version.version}" if registry_version else None
        ),
        promotion=run.data.tags.get("promotion_reason"),
        metric=metric,
        value=run.data.metrics.get(metric) if metric else None,
    )
    logger.info("published", extra={"folder": str(folder), "version": version, "run_id": run_id})
    return published
