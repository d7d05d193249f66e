"""`mozart train tune`: an Optuna search with median pruning, each trial a nested MLflow run."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mlflow
import optuna

from mozart_trainer.config import TrainConfig
from mozart_trainer.pipeline import run_training
from mozart_trainer.tracking import configure
from mozart_trainer.training import EpochSummary

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneResult:
    """The best trial's parameters and validation macro-F1."""

    best_params: dict[str, float]
    best_value: float
    n_trials: int
    n_pruned: int


def _trial_config(config: TrainConfig, trial: optuna.Trial) -> TrainConfig:
    optim = config.optim.model_copy(
        update={
            "learning_rate": trial.suggest_float("learning_rate", 3e-4, 1e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-4, 1e-1, log=True),
        }
    )
    model = config.model.model_copy(update={"dropout": trial.suggest_float("dropout", 0.0, 0.5)})
    return config.model_copy(
        update={"optim": optim, "model": model, "name": f"{config.name}-trial{trial.number}"}
    )


def tune(config: TrainConfig, n_trials: int) -> TuneResult:
    """Searches learning rate, weight decay and dropout; the objective is validation macro-F1.

    Each trial trains, exports and evaluates like `mozart train` (nothing is
    published to the model repository) inside a child run of one parent run.
    """
    configure(config.tracking.tracking_uri, config.tracking.experiment)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=config.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )

    def objective(trial: optuna.Trial) -> float:
        trial_config = _trial_config(config, trial).model_copy(update={"export_dir": None})

        def report(summary: EpochSummary) -> None:
            trial.report(summary.val_macro_f1, step=summary.epoch)
            if trial.should_prune():
                mlflow.set_tag("pruned", "true")
                raise optuna.TrialPruned

        outcome = run_training(trial_config, nested=True, register=False, on_epoch=report)
        return outcome.metrics["best_val_macro_f1"]

    with mlflow.start_run(run_name=f"{config.name}-tune"):
        mlflow.log_param("n_trials", n_trials)
        study.optimize(objective, n_trials=n_trials)
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
        mlflow.log_params({f"best_{k}": v for k, v in study.best_params.items()})
        mlflow.log_metric("best_val_macro_f1", study.best_value)
    logger.info("tuning done", extra={"best": study.best_params})
    return TuneResult(
        best_params=dict(study.best_params),
        best_value=float(study.best_value),
        n_trials=len(study.trials),
        n_pruned=pruned,
    )
