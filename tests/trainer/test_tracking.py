"""MLflow registry on a real sqlite store: candidate always, champion only when it wins.

The versions point at real ONNX-flavour models, so `mlflow.pyfunc` loads the champion.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from mozart_trainer.config import load_config
from mozart_trainer.tracking import (
    configure,
    default_tracking_uri,
    log_onnx_model,
    register_and_promote,
)
from tests.support.models import build_test_model

METRIC = "best_val_macro_f1"


def _run_with(metric: float, model_dir: Path) -> tuple[str, str]:
    with mlflow.start_run() as run:
        mlflow.log_metric(METRIC, metric)
        info = log_onnx_model(model_dir, np.zeros((1, 8_000), np.float32))
        run_id: str = run.info.run_id
        return run_id, info.model_uri


def test_candidate_and_champion_aliases(tmp_path: Path) -> None:
    configure(f"sqlite:///{tmp_path / 'mlflow.db'}", "registry-test")
    client = MlflowClient()
    model_dir = build_test_model(tmp_path / "models")
    first = register_and_promote(*_run_with(0.6, model_dir), "m", METRIC, 0.6)
    assert first.promoted
    assert first.reason == "no champion yet"
    worse = register_and_promote(*_run_with(0.5, model_dir), "m", METRIC, 0.5)
    assert not worse.promoted
    assert str(client.get_model_version_by_alias("m", "candidate").version) == worse.version
    assert str(client.get_model_version_by_alias("m", "champion").version) == first.version
    better = register_and_promote(*_run_with(0.7, model_dir), "m", METRIC, 0.7)
    assert better.promoted
    assert better.reason == f"{METRIC} 0.7000 beats champion v{first.version} (0.6)"
    assert str(client.get_model_version_by_alias("m", "champion").version) == better.version
    worse_run = client.get_model_version("m", worse.version).run_id
    assert worse_run is not None
    tags = client.get_run(worse_run).data.tags
    assert tags["promotion"] == "candidate-only"
    assert "does not beat" in tags["promotion_reason"]
    assert (tmp_path / "mlflow.db").is_file()

    # The champion is an ONNX-flavour model with the graph's signature.
    champion = mlflow.pyfunc.load_model("models:/m@champion")
    inputs = champion.metadata.get_input_schema()
    assert inputs is not None
    assert inputs.input_names() == ["waveform"]
    scores = champion.predict(np.zeros((3, 8_000), np.float32))
    assert isinstance(scores, dict)
    assert scores["probabilities"].shape[0] == 3


def test_promotion_uses_a_validation_metric_only() -> None:
    assert load_config(None).tracking.promote_metric == METRIC
    with pytest.raises(ValueError, match="best_val_macro_f1"):
        load_config(None, ["tracking.promote_metric=test_window_accuracy"])


def test_default_uri_is_sqlite_under_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_tracking_uri().startswith("sqlite:///")
    assert default_tracking_uri().endswith("/mlruns/mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert default_tracking_uri() == "http://tracking.example:5000"
