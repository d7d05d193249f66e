"""MLflow tracking and the model registry: a sqlite store under the project by default.

Every run registers a model version with alias ``candidate``. The alias
``champion`` moves to it only when it beats the current champion on the
held-out metric (or there is no champion); both outcomes are tagged on the run.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import mlflow
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mozart_trainer.paths import project_root

CANDIDATE = "candidate"
CHAMPION = "champion"
# Tracking stores limit a dataset digest to 36 characters; the full one is a run tag.
MLFLOW_DIGEST_CHARS = 36

logger = logging.getLogger(__name__)


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<repo>/mlruns/mlflow.db``."""
    from_env = os.environ.get("MLFLOW_TRACKING_URI")
    if from_env:
        return from_env
    return f"sqlite:///{project_root() / 'mlruns' / 'mlflow.db'}"


def configure(tracking_uri: str | None, experiment: str) -> str:
    """Points MLflow at the store, creating the sqlite folder and the experiment when needed.

    For a sqlite store, artifacts go to an ``artifacts`` folder beside the database
    rather than to ``./mlruns`` under whatever the working directory is.

    Returns:
        The experiment id.
    """
    uri = tracking_uri or default_tracking_uri()
    parsed = urlparse(uri)
    artifact_location: str | None = None
    if parsed.scheme == "sqlite":
        db_path = Path(uri.removeprefix("sqlite:///"))
        if not uri.startswith("sqlite:////") and not db_path.is_absolute():
            db_path = Path.cwd() / db_path
        db_path.parent.mkdir(parents=True, exist_ok=True)
        artifact_location = (db_path.parent / "artifacts").as_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    existing = mlflow.get_experiment_by_name(experiment)
    if existing is not None:
        experiment_id: str = existing.experiment_id
    else:
        experiment_id = mlflow.create_experiment(experiment, artifact_location=artifact_location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def log_dataset(digest: str, root: Path, name: str) -> None:
    """Logs the dataset as the active run's input, identified by its content digest."""
    with warnings.catch_warnings():
        # A file URI matches MLflow's local-artifact source twice over; it warns and picks it.
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(root.resolve().as_uri())
    dataset = MetaDataset(  # type: ignore[abstract]  # MLflow's own docs build it like this
        source=source,
        name=name,
        digest=digest[:MLFLOW_DIGEST_CHARS],
    )
    mlflow.log_input(dataset, context="training")
    mlflow.set_tag("dataset_digest", digest)


@dataclass(frozen=True)
class Registration:
    """The registered version and whether it became champion."""

    name: str
    version: str
    promoted: bool
    reason: str


def register_and_promote(
    run_id: str, artifact_path: str, name: str, metric: str, value: float
) -> Registration:
    """Registers the run's model as a new version, aliases it ``candidate``, maybe ``champion``."""
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Mozart audio classifier (ONNX)")
    source = f"{mlflow.get_run(run_id).info.artifact_uri}/{artifact_path}"
    version = client.create_model_version(name, source=source, run_id=run_id).version
    client.set_registered_model_alias(name, CANDIDATE, version)
    client.set_model_version_tag(name, version, metric, str(value))
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champion = None
    if champion is None or champion.run_id is None:
        promoted, reason = True, "no champion yet"
    else:
        champion_value = client.get_run(champion.run_id).data.metrics.get(metric)
        if champion_value is None or value > champion_value:
            promoted = True
            reason = f"{metric} {value:.4f} beats champion v{champion.version} ({champion_value})"
        else:
            promoted = False
            reason = (
                f"{metric} {value:.4f} does not beat champion v{champion.version} "
                f"({champion_value:.4f})"
            )
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    client.set_tag(run_id, "promotion", "champion" if promoted else "candidate-only")
    client.set_tag(run_id, "promotion_reason", reason)
    logger.info(
        json.dumps({"event": "registered", "model": name, "version": version, "promoted": promoted})
    )
    return Registration(name=name, version=str(version), promoted=promoted, reason=reason)
