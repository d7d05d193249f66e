"""MLflow tracking and the model registry: a sqlite store under the project by default.

Every run logs its model with MLflow's ONNX flavour and registers it as a model
version with alias ``candidate``. The alias ``champion`` moves to it only when it
beats the current champion on the validation metric (or there is no champion);
both outcomes are tagged on the run. The test split is reported, never compared.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import mlflow.onnx
import numpy as np
import onnx
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient
from mlflow.types.schema import Schema, TensorSpec

from mozart_trainer.paths import project_root

CANDIDATE = "candidate"
CHAMPION = "champion"
#: The run's artifact folder with the files a model repository version holds.
SERVER_FILES_ARTIFACT = "model"
#: Name of the ONNX-flavour model each run logs (what the registry versions point at).
ONNX_MODEL_NAME = "onnx"
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


def _signature(graph: onnx.ModelProto) -> ModelSignature:
    def specs(values: list[onnx.ValueInfoProto]) -> Schema:
        return Schema(
            [
                TensorSpec(
                    np.dtype(onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)),
                    tuple(
                        d.dim_value if d.HasField("dim_value") else -1
                        for d in v.type.tensor_type.shape.dim
                    ),
                    v.name,
                )
                for v in values
            ]
        )

    return ModelSignature(
        inputs=specs(list(graph.graph.input)), outputs=specs(list(graph.graph.output))
    )


def log_onnx_model(model_dir: Path, input_example: np.ndarray) -> ModelInfo:
    """Logs ``model_dir/model.onnx`` with the ONNX flavour, signature and input example.

    ``model.json`` and ``MODEL_CARD.md`` travel with it as extra files, so
    ``mlflow.pyfunc.load_model("models:/<name>@champion")`` loads what the server serves.
    The graph is saved as one file (no external data), like the server's copy.
    """
    graph = onnx.load(str(model_dir / "model.onnx"))
    extra = [
        str(model_dir / n) for n in ("model.json", "MODEL_CARD.md") if (model_dir / n).is_file()
    ]
    info: ModelInfo = mlflow.onnx.log_model(
        graph,
        name=ONNX_MODEL_NAME,
        signature=_signature(graph),
        input_example=input_example,
        save_as_external_data=False,
        extra_files=extra,
    )
    return info


@dataclass(frozen=True)
class Registration:
    """The registered version and whether it became champion."""

    name: str
    version: str
    promoted: bool
    reason: str


def register_and_promote(
    run_id: str, model_uri: str, name: str, metric: str, value: float
) -> Registration:
    """Registers a model of the run as a new version, aliases it ``candidate``, maybe ``champion``.

    Args:
        run_id: the run whose ``metric`` decides; the version records it.
        model_uri: the logged model to register (``ModelInfo.model_uri``).
        name: the registered model.
        metric: a validation metric (higher is better), read from each run.
        value: this run's value of ``metric``.
    """
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Mozart audio classifier (ONNX)")
    version = mlflow.register_model(model_uri, name).version
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
    logger.info("registered", extra={"model": name, "version": version, "promoted": promoted})
    return Registration(name=name, version=str(version), promoted=promoted, reason=reason)
