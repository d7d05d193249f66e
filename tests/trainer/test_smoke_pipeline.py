"""CI smoke run: the real `mozart` commands on the real smoke corpus, a real sqlite MLflow store.

Builds the smoke corpus (music21 -> FluidSynth), trains a few steps, exports,
checks parity (inside `mozart train`), publishes (`--publish`), and then reads the
sqlite store back to prove the run holds its parameters, metrics, dataset input,
artifacts and ONNX-flavour model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from mlflow.tracking import MlflowClient

from mozart_trainer.export import graph_io
from mozart_trainer.manifest import ModelManifest
from mozart_trainer.paths import project_root

pytestmark = pytest.mark.slow

SMOKE_CONFIG = project_root() / "trainer" / "configs" / "smoke.yaml"


def _mozart(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [sys.executable, "-m", "mozart_proto.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
        env={**os.environ, **(env or {})},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
    return completed


@pytest.fixture(scope="module")
def smoke_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("smoke") / "corpus"
    _mozart("data", "build-corpus", "--smoke", "--out", str(root), "--no-progress")
    return root


def test_train_export_parity_and_mlflow_on_the_smoke_corpus(
    smoke_corpus: Path, tmp_path: Path
) -> None:
    db = tmp_path / "mlflow.db"
    models = tmp_path / "models"
    completed = _mozart(
        "train",
        "--config",
        str(SMOKE_CONFIG),
        "--set",
        f"data.root={smoke_corpus}",
        "--set",
        f"output_dir={tmp_path / 'checkpoints'}",
        "--set",
        f"export_dir={models}",
        "--publish",
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{db}"},
    )
    assert "registered composer-cnn-smoke v1: no champion yet" in completed.stdout
    version_dir = models / "composer-cnn-smoke" / "1"
    assert f"published composer-cnn-smoke version 1 to {version_dir}" in completed.stdout
    manifest = ModelManifest.read(version_dir / "model.json")
    data_manifest = json.loads((smoke_corpus / "manifest.json").read_text())

    # model.json agrees with the ONNX graph and with the dataset.
    inputs, outputs = graph_io(version_dir / "model.onnx")
    assert [spec.model_dump() for spec in manifest.inputs] == inputs
    assert [spec.model_dump() for spec in manifest.outputs] == outputs
    assert manifest.labels == list(data_manifest["labels"])
    assert manifest.provenance.dataset_digest == data_manifest["dataset_digest"]
    assert len(manifest.reference_stats.mel_mean) == manifest.front_end["n_mels"]
    assert sum(manifest.reference_stats.class_distribution.values()) == pytest.approx(1.0, abs=1e-4)
    assert onnx.load(str(version_dir / "model.onnx")).opset_import[0].version >= 18
    assert (version_dir / "MODEL_CARD.md").read_text().count("test_timbre") >= 1

    # The run is in the sqlite store with params, per-epoch metrics, dataset input, artifacts.
    client = MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")
    run = client.get_run(manifest.provenance.mlflow_run_id)
    assert run.data.params["optim.max_steps"] == "6"
    assert {"val_macro_f1", "test_window_accuracy", "baseline_test_window_accuracy"} <= set(
        run.data.metrics
    )
    assert "test_timbre_window_accuracy" in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "val_macro_f1")) == 2
    assert run.data.tags["dataset_digest"] == data_manifest["dataset_digest"]
    assert run.inputs is not None
    assert run.inputs.dataset_inputs[0].dataset.digest == data_manifest["dataset_digest"][:36]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/model.onnx", "model/model.json", "model/MODEL_CARD.md"} <= artifacts
    champion = client.get_model_version_by_alias("composer-cnn-smoke", "champion")
    assert str(champion.source).startswith("models:/m-")  # the ONNX-flavour logged model
    reports = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/evaluation.json", "evaluation/confusion_test.png"} <= reports
    assert (
        client.get_model_version_by_alias("composer-cnn-smoke", "champion").run_id
        == run.info.run_id
    )

    # `mozart evaluate` on the published version recomputes the run's held-out accuracy.
    evaluated = _mozart(
        "evaluate", str(version_dir), "--data", str(smoke_corpus), "--out", str(tmp_path / "eval")
    )
    assert "| test |" in evaluated.stdout
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    test = next(s for s in report["splits"] if s["split"] == "test")
    assert test["window_accuracy"] == pytest.approx(
        manifest.provenance.metrics["test_window_accuracy"], abs=1e-6
    )
    assert (tmp_path / "eval" / "confusion_test.png").stat().st_size > 0

    # Temperature scaling, fitted on val, is in the graph: the run's report says so, with the
    # ECE before and after, and the published version's test ECE is the calibrated one.
    metrics = manifest.provenance.metrics
    assert metrics["temperature"] > 0
    assert {"val_ece_uncalibrated", "val_ece_calibrated", "test_ece_uncalibrated"} <= set(metrics)
    assert test["ece"] == pytest.approx(metrics["test_ece"], abs=1e-6)
    assert run.data.metrics["temperature"] == pytest.approx(metrics["temperature"])

    # `mozart export` rebuilds a version from the checkpoint, parity-checked.
    _mozart(
        "export",
        str(tmp_path / "checkpoints" / "composer-cnn-smoke" / "last.pt"),
        "--out",
        str(models / "composer-cnn-smoke" / "2"),
    )
    exported = ModelManifest.read(models / "composer-cnn-smoke" / "2" / "model.json")
    assert exported.version == "2"
    assert exported.provenance.mlflow_run_id == run.info.run_id
