"""Publishing from the registry, end to end on real parts.

Two real training runs on the synthetic corpus, against a real sqlite MLflow store
and against a real `mlflow server` on 127.0.0.1: the better one on validation
becomes champion. Training writes nothing into the
model repository; the real `mozart models publish` command writes version N+1
beside the existing one; a real server polling the repository serves it; and the
ONNX flavour loaded through `mlflow.pyfunc` scores as the server does.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import grpc
import mlflow.pyfunc
import numpy as np
import onnxruntime as ort
import pytest
from mlflow.tracking import MlflowClient

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from mozart_trainer.manifest import ModelManifest
from mozart_trainer.paths import project_root
from mozart_trainer.pipeline import TrainOutcome, run_training
from mozart_trainer.publish import PublishError, publish
from tests.support.audio import encode, music_clip
from tests.support.lifecycle import CALL_TIMEOUT_S, RATE_HZ, version_states, wait_for
from tests.support.server import SpawnedServer, spawned_server
from tests.trainer.synthetic_training import small_config

NAME = "composer-test"
WINDOW_SAMPLES = 48_000
LOAD_BUDGET_S = 120.0  # a spawned server's start, then reading, checking and warming the model
F32 = pb.AUDIO_ENCODING_PCM_F32LE
# Full MLflow, in a venv of its own that `make venv` builds: the trainer's mlflow-skinny
# has no tracking server. It needs no torch.
MLFLOW = project_root() / ".venv" / "mlflow-server" / "bin" / "mlflow"
SERVER_URL = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


@contextmanager
def _tracking_server(folder: Path) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1:0 with its own sqlite store and proxied artifacts."""
    process = subprocess.Popen(
        [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", "0", "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", str(folder / "artifacts")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so teardown stops its workers too
    )  # fmt: skip
    try:
        assert process.stdout is not None
        output: list[str] = []
        url = None
        for line in process.stdout:
            output.append(line)
            if match := SERVER_URL.search(line):
                url = match[1]
                break
        if url is None:
            raise RuntimeError("mlflow server did not start:\n" + "".join(output[-30:]))
        # Keep reading, so the server never blocks on a full pipe.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:  # its workers take their time; nothing to keep
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)


@pytest.fixture(params=["sqlite", "server"])
def tracking_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The default sqlite store, or a real MLflow tracking server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mlflow.db'}"
        return
    if not MLFLOW.is_file():
        pytest.skip(f"{MLFLOW} is missing: `make venv` installs full MLflow there")
    with _tracking_server(tmp_path / "tracking-server") as url:
        yield url


def _mozart(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mozart_proto.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
        env={key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"},
    )


def _train(corpus: Path, out: Path, uri: str, *overrides: str) -> TrainOutcome:
    config = small_config(
        corpus,
        out,
        f"name={NAME}",
        f"tracking.registered_model={NAME}",
        f"tracking.tracking_uri={uri}",
        "tracking.experiment=publish-test",
        f"export_dir={out.parent / 'models'}",
        *overrides,
    )
    return run_training(config)


def _server_scores(address: str, version: str, windows: np.ndarray) -> np.ndarray:
    with grpc.insecure_channel(address) as channel:
        response = pb_grpc.AudioClassifierStub(channel).Classify(
            pb.ClassifyRequest(
                model=pb.ModelRef(name=NAME, version=version),
                format=pb.AudioFormat(encoding=F32, sample_rate_hz=RATE_HZ, channels=1),
                audio=encode(windows.ravel(), RATE_HZ, F32),
                hop_ms=WINDOW_SAMPLES * 1000 // RATE_HZ,  # exactly these windows again
            ),
            timeout=CALL_TIMEOUT_S,
        )
    assert response.model_version == version
    return np.array([list(window.scores) for window in response.windows], dtype=np.float32)


def _states(address: str) -> dict[str, tuple[str, str]]:
    with grpc.insecure_channel(address) as channel:
        return version_states(pb_grpc.AudioClassifierStub(channel), NAME)


@pytest.mark.slow
def test_champion_by_validation_published_served_and_loaded_by_pyfunc(
    synthetic_corpus: Path, tmp_path: Path, tracking_uri: str
) -> None:
    uri = tracking_uri
    repository = tmp_path / "models"
    # A run that barely trains, then one that does: the second must win on validation.
    weak = _train(
        synthetic_corpus, tmp_path / "weak", uri, "seed=1", "optim.max_steps=1",
        "optim.learning_rate=1.0e-6", "optim.epochs=1",
    )  # fmt: skip
    strong = _train(synthetic_corpus, tmp_path / "strong", uri, "seed=2", "optim.epochs=2")
    weak_f1, strong_f1 = (o.metrics["best_val_macro_f1"] for o in (weak, strong))
    assert strong_f1 > weak_f1
    assert weak.registration is not None
    assert weak.registration.promoted
    assert strong.registration is not None
    assert strong.registration.promoted
    assert strong.registration.reason.startswith(f"best_val_macro_f1 {strong_f1:.4f} beats")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.get_model_version_by_alias(NAME, "champion").run_id == strong.run_id
    # Training alone publishes nothing, even with export_dir set.
    assert not repository.exists()
    if uri.startswith("http"):  # the tracking server, not this process, stored the files
        assert list((tmp_path / "tracking-server" / "artifacts").rglob("model.onnx"))

    # Version 1 from a run id, through the same code `mozart models publish` uses.
    first = publish(weak.run_id, repository, tracking_uri=uri)
    assert (first.folder, first.version, first.registered) == (repository / NAME / "1", 1, None)
    v1_bytes = {p.name: p.read_bytes() for p in first.folder.iterdir()}
    assert set(v1_bytes) == {"model.onnx", "model.json", "MODEL_CARD.md"}

    # Serving does not depend on the store: the sqlite case checks it with a real server
    # polling the repository; the tracking-server case scores the published file itself.
    serving: AbstractContextManager[SpawnedServer | None] = (
        nullcontext()
        if uri.startswith("http")
        else spawned_server(
            repository, "--model-control-mode", "poll", "--repository-poll-s", "0.2"
        )
    )
    with serving as server:
        if server is not None:
            assert wait_for(lambda: _states(server.address).get("1", ("",))[0] == "READY", 60.0)

        completed = _mozart(
            "models", "publish", f"models:/{NAME}@champion",
            "--repository", str(repository), "--tracking-uri", uri,
        )  # fmt: skip
        print(completed.stdout)  # the real output, for the docs
        assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
        folder = repository / NAME / "2"
        assert completed.stdout.splitlines() == [
            f"published {NAME} version 2 to {folder}",
            f"  source: models:/{NAME}@champion = {NAME} v2 (run {strong.run_id})",
            f"  best_val_macro_f1 (validation) = {strong_f1:.4f}",
            f"  promotion: {strong.registration.reason}",
        ]

        # Version 2 sits beside version 1, which is untouched; no staging folder is left.
        assert sorted(p.name for p in (repository / NAME).iterdir()) == ["1", "2"]
        assert {p.name: p.read_bytes() for p in first.folder.iterdir()} == v1_bytes
        manifest = ModelManifest.read(folder / "model.json")
        assert (manifest.name, manifest.version) == (NAME, "2")
        assert manifest.provenance.mlflow_run_id == strong.run_id
        assert (folder / "model.onnx").read_bytes() == (
            strong.model_dir / "model.onnx"
        ).read_bytes()
        card = (folder / "MODEL_CARD.md").read_text()
        assert card.startswith(f"# Model card: {NAME} version 2\n")
        assert f"mozart evaluate models/{NAME}/2 " in card
        assert "`best_val_macro_f1`" in card

        # The polling server picks version 2 up; the pyfunc flavour of the champion agrees.
        windows = music_clip(12.0, RATE_HZ, seed=5).astype(np.float32).reshape(-1, WINDOW_SAMPLES)
        if server is not None:
            assert wait_for(lambda: _states(server.address).get("2", ("",))[0] == "READY", 60.0)
            served = _server_scores(server.address, "2", windows)
        else:
            session = ort.InferenceSession(str(folder / "model.onnx"))
            (served,) = session.run(["probabilities"], {session.get_inputs()[0].name: windows})
        flavour = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
        predicted = flavour.predict(windows)
        assert isinstance(predicted, dict)
        np.testing.assert_allclose(predicted["probabilities"], served, atol=1e-5, rtol=0)

    # Sources that do not resolve are clear errors, and nothing is written.
    with pytest.raises(PublishError, match="nosuch"):
        publish(f"models:/{NAME}@nosuch", repository, tracking_uri=uri)
    with pytest.raises(PublishError, match="is not models:/NAME@ALIAS"):
        publish("latest", repository, tracking_uri=uri)
    assert sorted(p.name for p in (repository / NAME).iterdir()) == ["1", "2"]


def test_publish_without_the_trainer_is_a_usage_error() -> None:
    # As if mozart-trainer were not installed: its modules cannot be imported.
    script = (
        "import sys; sys.modules['mozart_trainer'] = None; from mozart_proto.cli import main; "
        "sys.exit(main(['models', 'publish', 'models:/composer-cnn@champion']))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert completed.returncode == 2
    assert "`mozart models publish` comes with mozart-trainer, which is not installed" in (
        completed.stderr
    )
