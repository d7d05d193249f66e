"""scripts/{deploy,rollback,backup,restore}.sh: ShellCheck-clean, their dry runs touch
nothing, and a backup restored for real serves the same scores.

The backup/restore pair runs on a real MLflow sqlite store (a registered model with
aliases, artifacts on disk) and a real model repository; after the originals are gone
and the backup is restored, a real server on the restored repository gives the scores
the original gave, and the restored registry resolves the alias to the same files.
deploy.sh and rollback.sh need a cluster to do anything real: here they render and say
what they would run. model_alias.py, the alias step of rollback.sh, runs for real.
"""

from __future__ import annotations

import filecmp
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.support.lifecycle import clip_request
from tests.support.models import build_test_model
from tests.support.server import running_server

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
BIN = Path(sys.executable).parent
SHELL_SCRIPTS = ("lib.sh", "deploy.sh", "rollback.sh", "backup.sh", "restore.sh")
#: The name production's overlay serves (models:/composer-cnn@champion); the registry's
#: versions hold the test model's files.
REGISTERED = "composer-cnn"


def _script(name: str, *args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECTL": str(BIN / "kubectl"), "PYTHON": sys.executable, **environment}
    return subprocess.run(
        ["bash", str(SCRIPTS / name), *args],
        capture_output=True, text=True, check=False, timeout=120, env=env,
    )  # fmt: skip


@dataclass(frozen=True)
class Store:
    """A deployment's state: model repository, MLflow sqlite store and artifacts, datasets."""

    models: Path
    mlflow_db: Path
    artifacts: Path
    datasets: Path

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    from mlflow.tracking import MlflowClient  # noqa: PLC0415 - slow import, this module only

    folder = tmp_path_factory.mktemp("deployment")
    state = Store(folder / "models", folder / "mlflow.db", folder / "mlartifacts", folder / "data")
    build_test_model(state.models, seed=0)
    build_test_model(state.models, version="2", seed=1)
    state.datasets.mkdir()
    (state.datasets / "manifest.json").write_text(json.dumps({"entries": [], "splits": {}}))
    client = MlflowClient(tracking_uri=state.tracking_uri)
    experiment = client.create_experiment("backup", artifact_location=state.artifacts.as_uri())
    client.create_registered_model(REGISTERED)
    for version in ("1", "2"):
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(state.models / "tiny" / version), "model")
        client.set_tag(run.info.run_id, "promotion", "champion")
        client.set_terminated(run.info.run_id)
        client.create_model_version(REGISTERED, f"{run.info.artifact_uri}/model", run.info.run_id)
    client.set_registered_model_alias(REGISTERED, "champion", "2")
    return state


def test_the_scripts_are_shellcheck_clean() -> None:
    completed = subprocess.run(
        [str(BIN / "shellcheck"), "-x", *(f"scripts/{name}" for name in SHELL_SCRIPTS)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout
    for name in SHELL_SCRIPTS[1:]:
        assert "set -euo pipefail" in (SCRIPTS / name).read_text(), name


def test_deploy_dry_run_renders_the_tag_and_says_what_it_would_run() -> None:
    production = _script("deploy.sh", "--dry-run", "production", "0.2.0")
    assert production.returncode == 0, production.stderr
    assert "image: ghcr.io/mozart-audio/mozart-server:0.2.0" in production.stderr
    assert "1 Rollout" in production.stderr
    lines = production.stdout.splitlines()
    assert lines[0].startswith(f"would run: {BIN / 'kubectl'} diff -f ")
    assert lines[1].startswith(f"would run: {BIN / 'kubectl'} apply -f ")
    assert "argo rollouts status mozart-server -n mozart" in lines[2]
    dev = _script("deploy.sh", "--dry-run", "dev")
    assert dev.returncode == 0, dev.stderr
    version = (ROOT / "VERSION").read_text().strip()
    assert f"image: ghcr.io/mozart-audio/mozart-server:{version}" in dev.stderr
    assert "-n mozart-dev rollout status deployment/mozart-server" in dev.stdout
    for args, complaint in (
        (["--dry-run", "qa"], "unknown environment 'qa'"),
        (["--dry-run", "dev", "latest"], "refusing the tag 'latest'"),
        (["--dry-run", "dev", "a/b"], "not an image tag"),
    ):
        refused = _script("deploy.sh", *args)
        assert refused.returncode == 2
        assert complaint in refused.stderr


def _model_alias(*args: str) -> int:
    spec = importlib.util.spec_from_file_location("model_alias", SCRIPTS / "model_alias.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(list(args)))


def test_rollback_names_the_previous_champion_and_moves_the_alias_back(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    kubectl = BIN / "kubectl"
    # The image step: abort and undo the canary (production) or undo the Deployment (dev).
    dry = _script("rollback.sh", "--dry-run", "--image-only", "production")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"would run: {kubectl} argo rollouts abort mozart-server -n mozart",
        f"would run: {kubectl} argo rollouts undo mozart-server -n mozart",
        f"would run: {kubectl} argo rollouts status mozart-server -n mozart --timeout 30m",
    ]
    dev = _script("rollback.sh", "--dry-run", "dev")
    assert dev.returncode == 0, dev.stderr
    assert "no alias to move" in dev.stderr
    assert f"would run: {kubectl} -n mozart-dev rollout undo deployment/mozart-server" in dev.stdout
    # The model step (what rollback.sh runs for production's models:/composer-cnn@champion;
    # in this process, as a second interpreter would spend its time importing MLflow).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
    assert _model_alias("--dry-run", "previous", f"models:/{REGISTERED}@champion") == 0
    assert capsys.readouterr().out == (
        f"would move {REGISTERED}@champion from version 2 to 1 (rolled-back: 2)\n"
    )
    client = MlflowClient(tracking_uri=store.tracking_uri)
    assert str(client.get_model_version_by_alias(REGISTERED, "champion").version) == "2"

    # For real.
    assert _model_alias("previous", f"models:/{REGISTERED}@champion") == 0
    assert f"moved {REGISTERED}@champion from version 2 to 1" in capsys.readouterr().out
    assert str(client.get_model_version_by_alias(REGISTERED, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(REGISTERED, "rolled-back").version) == "2"
    # Version 1 has no champion before it: nothing to go back to, and nothing moves.
    assert _model_alias("previous", f"models:/{REGISTERED}@champion") == 1
    assert "was ever champion" in capsys.readouterr().err
    client.set_registered_model_alias(REGISTERED, "champion", "2")  # as the other tests expect
    client.delete_registered_model_alias(REGISTERED, "rolled-back")


def test_backup_dry_run_writes_nothing(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "backups"
    dry = _script("backup.sh", "--dry-run", "--models", str(store.models),
                  "--mlflow-db", str(store.mlflow_db), str(target))  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert "would run: tar -C" in dry.stdout
    assert not target.exists()
    nothing = _script("backup.sh", str(target))
    assert nothing.returncode == 2
    assert "nothing to back up" in nothing.stderr


def _scores(models: Path) -> list[list[float]]:
    with running_server(models) as server, grpc.insecure_channel(server.address) as channel:
        response = pb_grpc.AudioClassifierStub(channel).Classify(clip_request("tiny"), timeout=60)
    assert response.model_version == "2"
    return [list(window.scores) for window in response.windows]


def test_backup_then_restore_serves_the_same_scores(store: Store, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    before = _scores(store.models)
    originals = tmp_path / "originals"
    shutil.copytree(store.models, originals)
    made = _script("backup.sh", "--models", str(store.models), "--mlflow-db", str(store.mlflow_db),
                   "--mlflow-artifacts", str(store.artifacts), "--datasets", str(store.datasets),
                   str(tmp_path / "backups"))  # fmt: skip
    assert made.returncode == 0, made.stderr
    backup = Path(made.stdout.splitlines()[-1])
    assert sorted(p.name for p in backup.iterdir()) == [
        "SHA256SUMS", "datasets.tar.gz", "mlflow-artifacts.tar.gz", "mlflow.db",
        "models.tar.gz", "parts",
    ]  # fmt: skip

    # Dry run and occupied targets: nothing changes.
    assert _script("restore.sh", "--dry-run", str(backup)).returncode == 2  # targets exist
    refused = _script("restore.sh", str(backup))
    assert refused.returncode == 2
    assert "exists and is not empty" in refused.stderr

    # A damaged archive is refused before anything is touched.
    damaged = tmp_path / "damaged"
    shutil.copytree(backup, damaged)
    with (damaged / "models.tar.gz").open("r+b") as archive:
        archive.seek(20)
        archive.write(b"\x00\x00\x00\x00")
    assert "checksums do not match" in _script("restore.sh", "--force", str(damaged)).stderr

    # One target gone, the others there: refused before the missing one is restored.
    shutil.rmtree(store.models)
    partial = _script("restore.sh", str(backup))
    assert partial.returncode == 2
    assert str(store.datasets) in partial.stderr
    assert not store.models.exists()

    for path in (store.artifacts, store.datasets):
        shutil.rmtree(path)
    store.mlflow_db.unlink()
    dry = _script("restore.sh", "--dry-run", str(backup))
    assert dry.returncode == 0, dry.stderr
    assert not store.models.exists()
    restored = _script("restore.sh", str(backup))
    assert restored.returncode == 0, restored.stderr

    assert filecmp.dircmp(store.models, originals).diff_files == []
    assert (store.datasets / "manifest.json").is_file()
    assert _scores(store.models) == before
    client = MlflowClient(tracking_uri=store.tracking_uri)
    champion = client.get_model_version_by_alias(REGISTERED, "champion")
    assert str(champion.version) == "2"
    assert champion.run_id is not None
    downloaded = Path(client.download_artifacts(champion.run_id, "model", str(tmp_path / "dl")))
    assert (downloaded / "model.onnx").read_bytes() == (
        originals / "tiny" / "2" / "model.onnx"
    ).read_bytes()
