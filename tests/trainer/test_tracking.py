"""MLflow registry on a real sqlite store: candidate always, champion only when it wins."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from mozart_trainer.tracking import configure, default_tracking_uri, register_and_promote


def _run_with(metric: float) -> str:
    with mlflow.start_run() as run:
        mlflow.log_metric("test_window_accuracy", metric)
        run_id: str = run.info.run_id
        return run_id


def test_candidate_and_champion_aliases(tmp_path: Path) -> None:
    configure(f"sqlite:///{tmp_path / 'mlflow.db'}", "registry-test")
    client = MlflowClient()
    first = register_and_promote(_run_with(0.6), "model", "m", "test_window_accuracy", 0.6)
    assert first.promoted
    assert first.reason == "no champion yet"
    worse = register_and_promote(_run_with(0.5), "model", "m", "test_window_accuracy", 0.5)
    assert not worse.promoted
    assert str(client.get_model_version_by_alias("m", "candidate").version) == worse.version
    assert str(client.get_model_version_by_alias("m", "champion").version) == first.version
    better = register_and_promote(_run_with(0.7), "model", "m", "test_window_accuracy", 0.7)
    assert better.promoted
    assert str(client.get_model_version_by_alias("m", "champion").version) == better.version
    worse_run = client.get_model_version("m", worse.version).run_id
    assert worse_run is not None
    tags = client.get_run(worse_run).data.tags
    assert tags["promotion"] == "candidate-only"
    assert "does not beat" in tags["promotion_reason"]
    assert (tmp_path / "mlflow.db").is_file()


def test_default_uri_is_sqlite_under_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_tracking_uri().startswith("sqlite:///")
    assert default_tracking_uri().endswith("/mlruns/mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert default_tracking_uri() == "http://tracking.example:5000"
