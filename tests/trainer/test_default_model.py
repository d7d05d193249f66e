"""The committed default model: a valid repository entry, and its card's numbers recompute.

The fast tests check the files. The slow one builds (or reuses) the default
corpus exactly as `make train` does and runs `mozart evaluate` on the committed
ONNX file: the held-out accuracy must match the card's within one point.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mozart_trainer.export import graph_io, onnx_session
from mozart_trainer.manifest import ModelManifest
from mozart_trainer.paths import project_root
from tests.support.corpus import default_corpus

MODEL_DIR = project_root() / "models" / "composer-cnn" / "1"


@pytest.fixture(scope="module")
def manifest() -> ModelManifest:
    return ModelManifest.read(MODEL_DIR / "model.json")


def test_the_entry_is_what_the_server_expects(manifest: ModelManifest) -> None:
    assert manifest.name == MODEL_DIR.parent.name
    assert manifest.version == MODEL_DIR.name
    assert (MODEL_DIR / "model.onnx").stat().st_size < 10 * 1024 * 1024
    inputs, outputs = graph_io(MODEL_DIR / "model.onnx")
    assert [spec.model_dump() for spec in manifest.inputs] == inputs
    assert [spec.model_dump() for spec in manifest.outputs] == outputs
    assert inputs[0]["shape"] == [-1, manifest.window_samples]
    assert manifest.front_end["center"] is False
    assert "mozart" in manifest.labels
    assert len(manifest.reference_stats.mel_mean) == manifest.front_end["n_mels"]


def test_the_servers_loader_accepts_it() -> None:
    """The contract test: the server's own manifest reader and graph check pass."""
    from mozart_server.models.manifest import (  # noqa: PLC0415 - the server is only a test dependency here
        check_against_graph,
        read_manifest,
    )
    from mozart_server.models.repository import VersionDir  # noqa: PLC0415
    from mozart_server.tensors import TensorSpec  # noqa: PLC0415

    served = read_manifest(VersionDir(MODEL_DIR.parent.name, MODEL_DIR.name, MODEL_DIR))
    session = onnx_session(MODEL_DIR / "model.onnx")

    def spec(node: object) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)  # type: ignore[attr-defined]
        return TensorSpec(name=node.name, dtype="float32", shape=shape)  # type: ignore[attr-defined]

    check_against_graph(
        served, [spec(n) for n in session.get_inputs()], [spec(n) for n in session.get_outputs()]
    )


def test_it_runs_in_onnx_runtime_at_any_batch(manifest: ModelManifest) -> None:
    session = onnx_session(MODEL_DIR / "model.onnx")
    t = np.arange(manifest.window_samples) / manifest.sample_rate_hz
    batch = np.stack([0.2 * np.sin(2 * np.pi * f * t) for f in (262, 330, 392)]).astype(np.float32)
    probabilities, logits, embedding = session.run(None, {"waveform": batch})
    assert probabilities.shape == (3, len(manifest.labels))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert embedding.shape[0] == 3
    assert np.isfinite(logits).all()


def test_the_card_states_the_manifest_numbers(manifest: ModelManifest) -> None:
    card = (MODEL_DIR / "MODEL_CARD.md").read_text()
    accuracy = manifest.provenance.metrics["test_window_accuracy"]
    baseline = manifest.provenance.metrics["baseline_test_window_accuracy"]
    assert f"window accuracy: **{accuracy:.3f}**" in card
    assert f"baseline **{baseline:.3f}**" in card
    assert "test_timbre" in card
    assert "rendered from scores" in card


@pytest.mark.slow
def test_evaluate_recomputes_the_cards_held_out_accuracy(
    manifest: ModelManifest, tmp_path: Path
) -> None:
    corpus = default_corpus()
    evaluated = subprocess.run(
        [
            sys.executable,
            "-m",
            "mozart_proto.cli",
            "evaluate",
            str(MODEL_DIR),
            "--data",
            str(corpus),
            "--split",
            "test",
            "--no-baseline",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads((tmp_path / "evaluation.json").read_text())
    recomputed = report["splits"][0]["window_accuracy"]
    card = (MODEL_DIR / "MODEL_CARD.md").read_text()
    stated = float(re.search(r"window accuracy: \*\*([0-9.]+)\*\*", card).group(1))  # type: ignore[union-attr]
    digest_note = (
        f"dataset digest now {report['dataset_digest']}, "
        f"model trained on {manifest.provenance.dataset_digest}"
    )
    assert abs(recomputed - stated) <= 0.01, digest_note
