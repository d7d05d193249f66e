"""`mozart train` end to end: train, export, check parity, evaluate, track, register, publish.

Publishing to the model repository happens only when asked, through `publish.publish`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch

from mozart_trainer.assess import REPORT_NAME, EvaluationReport, evaluate_version
from mozart_trainer.calibration import Calibration, calibrate
from mozart_trainer.card import write_model_card
from mozart_trainer.config import TrainConfig
from mozart_trainer.corpus import Split, dataset_digest, list_labels, load_split
from mozart_trainer.evaluate import predict
from mozart_trainer.export import ParityResult, check_parity, export_onnx, graph_io
from mozart_trainer.frontend import FrontEndConfig
from mozart_trainer.manifest import (
    ModelManifest,
    Provenance,
    TensorSpec,
    git_commit,
    now_iso,
    reference_stats,
)
from mozart_trainer.model import AudioCNN, count_parameters, macs_per_window
from mozart_trainer.paths import project_root
from mozart_trainer.publish import Published, publish
from mozart_trainer.tracking import (
    SERVER_FILES_ARTIFACT,
    Registration,
    configure,
    log_dataset,
    log_onnx_model,
    register_and_promote,
)
from mozart_trainer.training import EpochSummary, measure_normalisation, train_model

PARITY_CLIPS = 7

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOutcome:
    """What a training run produced."""

    run_id: str
    model_dir: Path
    evaluation: EvaluationReport
    metrics: dict[str, float]
    registration: Registration | None
    parity: ParityResult
    parameters: int
    macs_per_window: int
    onnx_bytes: int
    published: Published | None


def _load(config: TrainConfig, split: str, labels: list[str], hop_ms: int) -> Split:
    data = config.data
    return load_split(
        data.root,
        split,
        labels,
        sample_rate_hz=data.sample_rate_hz,
        window_samples=data.window_samples,
        hop_samples=data.sample_rate_hz * hop_ms // 1000,
    )


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def _with_calibration(
    evaluation: EvaluationReport, calibration: Calibration | None, report: Path
) -> EvaluationReport:
    """The evaluation with the calibration record, rewritten to `report` (as it is without)."""
    if calibration is None:
        return evaluation
    evaluation = replace(evaluation, calibration=calibration)
    evaluation.write(report)
    return evaluation


def _headline_metrics(
    evaluation: EvaluationReport, test_split: str, best_val_f1: float
) -> dict[str, float]:
    metrics = {"best_val_macro_f1": best_val_f1}
    for report in evaluation.splits:
        prefix = "test" if report.split == test_split else report.split
        metrics[f"{prefix}_window_accuracy"] = report.window_accuracy
        metrics[f"{prefix}_window_macro_f1"] = report.window_macro_f1
        metrics[f"{prefix}_work_accuracy"] = report.work_accuracy
        metrics[f"{prefix}_ece"] = report.ece
        if report.baseline_window_accuracy is not None:
            metrics[f"baseline_{prefix}_window_accuracy"] = report.baseline_window_accuracy
        if report.baseline_window_macro_f1 is not None:
            metrics[f"baseline_{prefix}_window_macro_f1"] = report.baseline_window_macro_f1
    calibration = evaluation.calibration
    if calibration is not None:
        metrics["temperature"] = calibration.temperature
        metrics["val_ece_uncalibrated"] = calibration.val_ece_before
        metrics["val_ece_calibrated"] = calibration.val_ece_after
        if calibration.test_ece_before is not None:
            metrics["test_ece_uncalibrated"] = calibration.test_ece_before
    return {k: round(v, 6) for k, v in metrics.items()}


def build_version(
    model: AudioCNN,
    config: TrainConfig,
    labels: list[str],
    *,
    digest: str,
    run_id: str,
    val: Split,
    test: Split,
    model_dir: Path,
    metrics: dict[str, float],
) -> tuple[ModelManifest, ParityResult]:
    """Exports model.onnx, checks parity on real test clips, and writes model.json.

    Raises:
        ParityError: ONNX Runtime disagrees with PyTorch.
    """
    data = config.data
    onnx_path = export_onnx(model, data.window_samples, model_dir / "model.onnx")
    clips = test.windows(np.arange(min(PARITY_CLIPS, test.n_windows)), data.window_samples)
    parity = check_parity(model, onnx_path, clips)
    val_probs, _, _ = predict(model, val, data.window_samples)
    inputs, outputs = graph_io(onnx_path)
    manifest = ModelManifest(
        name=config.name,
        version=str(config.export_version),
        task=config.task,
        labels=labels,
        sample_rate_hz=data.sample_rate_hz,
        window_samples=data.window_samples,
        default_hop_ms=data.default_hop_ms,
        inputs=[TensorSpec.model_validate(spec) for spec in inputs],
        outputs=[TensorSpec.model_validate(spec) for spec in outputs],
        front_end=model.front_end.config.to_manifest(),
        provenance=Provenance(
            dataset_digest=digest,
            git_commit=git_commit(project_root()),
            mlflow_run_id=run_id,
            metrics=metrics,
            created_at=now_iso(),
        ),
        reference_stats=reference_stats(model, val, val_probs, labels, data.window_samples),
    )
    manifest.write(model_dir / "model.json")
    return manifest, parity


def run_training(
    config: TrainConfig,
    *,
    resume: bool = False,
    nested: bool = False,
    register: bool = True,
    on_epoch: Callable[[EpochSummary], None] | None = None,
    publish_version: bool = False,
) -> TrainOutcome:
    """Trains, exports and evaluates one model, tracked as one MLflow run.

    Args:
        config: the validated configuration.
        resume: continue from the last checkpoint of ``config.name``.
        nested: open the MLflow run as a child of the active run (tuning trials).
        register: register a model version (``candidate``, maybe ``champion``).
        on_epoch: extra per-epoch hook (Optuna pruning).
        publish_version: afterwards, publish the run as the next version of
            ``config.name`` in ``config.export_dir`` (as `mozart models publish` does).

    Raises:
        ValueError: ``publish_version`` without an ``export_dir``.
    """
    data = config.data
    if publish_version and config.export_dir is None:
        raise ValueError("publishing needs export_dir, the model repository (e.g. models)")
    configure(config.tracking.tracking_uri, config.tracking.experiment)
    labels = list_labels(data.root, data.train_split)
    train = _load(config, data.train_split, labels, data.train_hop_ms)
    val = _load(config, data.val_split, labels, data.eval_hop_ms)
    digest = dataset_digest(data.root)
    with mlflow.start_run(nested=nested) as run:
        run_id = run.info.run_id
        mlflow.log_params(_flatten(config.model_dump(mode="json")))
        log_dataset(digest, data.root, data.root.name)
        raw = config.front_end.build(data.sample_rate_hz, 0.0, 1.0)
        norm_mean, norm_std = measure_normalisation(config, train, raw)
        front_end = config.front_end.build(data.sample_rate_hz, norm_mean, norm_std)

        def log_epoch(summary: EpochSummary) -> None:
            mlflow.log_metrics(
                {
                    "train_loss": summary.train_loss,
                    "val_loss": summary.val_loss,
                    "val_accuracy": summary.val_accuracy,
                    "val_macro_f1": summary.val_macro_f1,
                    "learning_rate": summary.learning_rate,
                },
                step=summary.epoch,
            )
            if on_epoch is not None:
                on_epoch(summary)

        result = train_model(
            config, train, val, labels, front_end, resume=resume, on_epoch=log_epoch, run_id=run_id
        )
        best_val_f1 = max((row.val_macro_f1 for row in result.history), default=0.0)
        model_dir = config.output_dir / run_id / config.name / str(config.export_version)
        test = _load(config, data.test_split, labels, data.eval_hop_ms)
        # Temperature scaling, fitted on validation, folded into the exported head.
        calibrated, calibration = calibrate(result.model, val, test, data.window_samples)
        manifest, parity = build_version(
            calibrated,
            config,
            labels,
            digest=digest,
            run_id=run_id,
            val=val,
            test=test,
            model_dir=model_dir,
            metrics={"best_val_macro_f1": round(best_val_f1, 6)},
        )
        onnx_path = model_dir / "model.onnx"
        reports_dir = model_dir.parent.parent / "evaluation"
        evaluation = evaluate_version(
            model_dir,
            data.root,
            [data.test_split, *(s for s in data.extra_eval_splits if (data.root / s).is_dir())],
            baseline_train_split=data.train_split,
            out_dir=reports_dir,
            seed=config.seed,
        )
        evaluation = _with_calibration(evaluation, calibration, reports_dir / REPORT_NAME)
        metrics = _headline_metrics(evaluation, data.test_split, best_val_f1)
        manifest = manifest.model_copy(
            update={"provenance": manifest.provenance.model_copy(update={"metrics": metrics})}
        )
        manifest.write(model_dir / "model.json")
        parameters = count_parameters(result.model)
        macs = macs_per_window(result.model, data.window_samples)
        onnx_bytes = onnx_path.stat().st_size
        mlflow.log_metrics(
            {**metrics, "parameters": parameters, "macs_per_window": macs, "onnx_bytes": onnx_bytes}
        )
        write_model_card(
            model_dir / "MODEL_CARD.md",
            config=config,
            manifest=manifest,
            evaluation=evaluation,
            parameters=parameters,
            macs=macs,
            onnx_bytes=onnx_bytes,
            history=result.history,
        )
        # The files a repository version holds, as they are; registered runs also log the
        # same graph as an ONNX-flavour model, which is what the registry versions point at.
        mlflow.log_artifacts(str(model_dir), artifact_path=SERVER_FILES_ARTIFACT)
        mlflow.log_artifacts(str(reports_dir), artifact_path="evaluation")
        registration: Registration | None = None
        if register:
            logged_model = log_onnx_model(
                model_dir, test.windows(np.arange(min(1, test.n_windows)), data.window_samples)
            )
            registration = register_and_promote(
                run_id,
                logged_model.model_uri,
                config.tracking.registered_model,
                config.tracking.promote_metric,
                metrics[config.tracking.promote_metric],
            )
        logger.info("run done", extra={"run_id": run_id, **metrics})
    published: Published | None = None
    if publish_version:
        assert config.export_dir is not None  # checked above
        published = publish(run_id, config.export_dir, name=config.name)
    return TrainOutcome(
        run_id=run_id,
        model_dir=model_dir,
        evaluation=evaluation,
        metrics=metrics,
        registration=registration,
        parity=parity,
        parameters=parameters,
        macs_per_window=macs,
        onnx_bytes=onnx_bytes,
        published=published,
    )


def export_checkpoint(checkpoint: Path, out_dir: Path, data_root: Path | None = None) -> Path:
    """Exports a training checkpoint's best model as a model repository version.

    Args:
        checkpoint: a ``last.pt`` written by `mozart train`.
        out_dir: ``models/<name>/<version>/`` to write model.onnx and model.json into.
        data_root: dataset for parity clips and reference statistics; default: the
            one the checkpoint was trained on.

    Returns:
        The folder written.
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    config = TrainConfig.model_validate(state["config"])
    if data_root is not None:
        config = config.model_copy(
            update={"data": config.data.model_copy(update={"root": data_root})}
        )
    config = config.model_copy(
        update={"name": out_dir.parent.name, "export_version": int(out_dir.name)}
    )
    labels: list[str] = state["labels"]
    model = AudioCNN(
        len(labels), config.task, FrontEndConfig(**state["front_end"]), config.model.build()
    )
    model.load_state_dict(state["best_model"])
    model.eval()
    data = config.data
    val, test = (
        _load(config, split, labels, data.eval_hop_ms)
        for split in (data.val_split, data.test_split)
    )
    run_id = str(state.get("mlflow_run_id", ""))
    build_version(
        model,
        config,
        labels,
        digest=dataset_digest(data.root),
        run_id=run_id,
        val=val,
        test=test,
        model_dir=out_dir,
        metrics={"best_val_macro_f1": float(state["best_f1"])},
    )
    return out_dir
