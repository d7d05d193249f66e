"""`mozart train tune`: Optuna trials become child runs of one parent run in the sqlite store."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mozart_trainer.config import load_config
from mozart_trainer.tune import tune

pytestmark = pytest.mark.slow


def test_each_trial_is_a_child_run_and_nothing_is_registered(
    synthetic_corpus: Path, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = load_config(
        None,
        [
            f"data.root={synthetic_corpus}",
            f"output_dir={tmp_path / 'checkpoints'}",
            f"tracking.tracking_uri={uri}",
            "tracking.experiment=tune-test",
            "data.extra_eval_splits=[]",
            "model.channels=[4, 8]",
            "model.embedding_dim=8",
            "optim.epochs=1",
            "optim.max_steps=2",
            "optim.batch_size=8",
        ],
    )
    result = tune(config, n_trials=2)
    assert result.n_trials == 2
    assert set(result.best_params) == {"learning_rate", "weight_decay", "dropout"}
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("tune-test")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    assert len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert all("test_window_accuracy" in r.data.metrics for r in children)
    assert parents[0].data.metrics["best_val_macro_f1"] == pytest.approx(result.best_value)
    assert client.search_registered_models() == []
