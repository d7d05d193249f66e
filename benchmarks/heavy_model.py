"""The heavy benchmark model: the trainer's AudioCNN, wider and at a finer STFT hop, untrained.

About 0.35 GMAC per 3 s window, of which the STFT front end (n_fft 512 at hop 160) is
about 78 M: the load fixture of issue 14, shaped like the real model (same front end
classes, same conv blocks, same export) so every server path it takes is the real one's.
Random weights: the scores mean nothing, the compute is what is measured.

    python -m benchmarks.heavy_model            # build (or reuse) it; print its MAC count

It is built on demand into benchmarks/results/models/ (gitignored), as a model repository
version (model.onnx + model.json) the server loads like any other. The build needs torch
(the dev venv); the server that serves it does not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

NAME = "heavy-cnn"
VERSION = "1"
CACHE = Path(__file__).with_name("results") / "models"
LABELS = ("bach", "beethoven", "haydn", "monteverdi", "mozart", "palestrina")


@dataclass(frozen=True)
class HeavySpec:
    """What the heavy model is: its front end, body and window."""

    sample_rate_hz: int = 16_000
    window_samples: int = 48_000  # 3 s
    default_hop_ms: int = 1_000  # the streams: 1 s hop over 3 s windows
    n_fft: int = 512
    stft_hop: int = 160  # 10 ms: 297 frames, 78 M MAC of STFT per window
    n_mels: int = 64
    channels: tuple[int, ...] = (32, 64, 128, 256)  # twice the trainer's default width
    embedding_dim: int = 256
    seed: int = 0

    def digest(self) -> str:
        """A short hash of the spec: a changed spec builds a fresh model."""
        return hashlib.sha256(json.dumps(asdict(self)).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates per window, counted from the ONNX graph's Conv and MatMul shapes."""

    total: int
    front_end: int  # the STFT Conv and the mel MatMul, before the first 2-D conv
    stft: int  # the STFT alone: the 1-D Conv over the waveform

    @property
    def stft_share(self) -> float:
        """The front end's share of the total."""
        return self.front_end / self.total if self.total else 0.0


def count_macs(path: Path) -> MacCount:
    """Counts MACs of one window (batch 1) from the graph's Conv, MatMul and Gemm nodes.

    The batch axis is fixed to 1 and ONNX shape inference fills every intermediate shape;
    a Conv costs its output size times (input channels / groups x kernel size), a MatMul
    its output size times the shared dimension.
    """
    model = onnx.load(str(path))
    del model.graph.value_info[:]  # the exporter's, with a symbolic batch: infer them anew
    for value in model.graph.input:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, tuple[int, ...]] = {}
    for value in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(dim.dim_value for dim in dims)
    for initializer in inferred.graph.initializer:
        shapes[initializer.name] = tuple(initializer.dims)
    total = front_end = stft = 0
    seen_conv2d = False
    for node in inferred.graph.node:
        if node.op_type == "Conv":
            weight = shapes[node.input[1]]
            # The weight is [out, in / groups, *kernel]: each output sums in/groups x kernel.
            macs = int(np.prod(shapes[node.output[0]])) * int(np.prod(weight[1:]))
            if len(weight) == 4:
                seen_conv2d = True
            else:
                stft += macs
        elif node.op_type in ("MatMul", "Gemm"):
            left = shapes[node.input[0]]
            macs = int(np.prod(shapes[node.output[0]])) * int(left[-1])
        else:
            continue
        total += macs
        if not seen_conv2d:
            front_end += macs
    return MacCount(total=total, front_end=front_end, stft=stft)


def _build(spec: HeavySpec, version_dir: Path) -> None:
    """Exports the untrained model and writes its model.json into `version_dir`."""
    # Imported when building: a run that finds the model cached never loads torch.
    import torch  # noqa: PLC0415

    from mozart_trainer.export import export_onnx, graph_io  # noqa: PLC0415
    from mozart_trainer.frontend import FrontEndConfig  # noqa: PLC0415
    from mozart_trainer.manifest import (  # noqa: PLC0415
        RMS_HISTOGRAM_EDGES_DB,
        ModelManifest,
        Provenance,
        ReferenceStats,
        RmsHistogram,
        git_commit,
        now_iso,
    )
    from mozart_trainer.model import AudioCNN, ModelConfig  # noqa: PLC0415

    torch.manual_seed(spec.seed)
    front_end = FrontEndConfig(
        sample_rate_hz=spec.sample_rate_hz,
        n_fft=spec.n_fft,
        hop_length=spec.stft_hop,
        win_length=spec.n_fft,
        n_mels=spec.n_mels,
        # Roughly the real model's log-mel statistics, so activations stay in range.
        norm_mean=-5.5,
        norm_std=4.0,
    )
    config = ModelConfig(channels=spec.channels, embedding_dim=spec.embedding_dim, dropout=0.0)
    model = AudioCNN(len(LABELS), "multiclass", front_end, config).eval()
    onnx_path = export_onnx(model, spec.window_samples, version_dir / "model.onnx")
    inputs, outputs = graph_io(onnx_path)
    edges = list(RMS_HISTOGRAM_EDGES_DB)
    manifest = ModelManifest.model_validate(
        {
            "name": NAME,
            "version": VERSION,
            "task": "multiclass",
            "labels": list(LABELS),
            "sample_rate_hz": spec.sample_rate_hz,
            "window_samples": spec.window_samples,
            "default_hop_ms": spec.default_hop_ms,
            "inputs": inputs,
            "outputs": outputs,
            "front_end": front_end.to_manifest(),
            "provenance": Provenance(
                dataset_digest="",
                git_commit=git_commit(),
                mlflow_run_id="",
                metrics={},
                created_at=now_iso(),
            ),
            # Flat references: the model is a load fixture, drift on it means nothing.
            "reference_stats": ReferenceStats(
                mel_mean=[0.0] * spec.n_mels,
                mel_std=[1.0] * spec.n_mels,
                rms_histogram=RmsHistogram(edges=edges, counts=[1] * (len(edges) - 1)),
                class_distribution={label: 1 / len(LABELS) for label in LABELS},
            ),
        }
    )
    manifest.write(version_dir / "model.json")


def ensure_heavy_model(cache: Path = CACHE, spec: HeavySpec = HeavySpec()) -> Path:
    """The model repository holding the heavy model, built first if this spec has none yet.

    Returns the repository folder (`<cache>/<digest>`, holding `heavy-cnn/1/`); the build
    goes to a temporary folder first, so an interrupted build leaves nothing half-written.
    """
    repository = cache / spec.digest()
    version_dir = repository / NAME / VERSION
    if (version_dir / "model.json").is_file() and (version_dir / "model.onnx").is_file():
        return repository
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        building = Path(scratch) / NAME / VERSION
        _build(spec, building)
        repository.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(repository / NAME, ignore_errors=True)
        shutil.move(str(Path(scratch) / NAME), str(repository / NAME))
    return repository


def main(argv: Sequence[str] | None = None) -> int:
    """Builds (or finds) the heavy model and prints where it is and its MAC count."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.heavy_model", description=__doc__)
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args(argv)
    repository = ensure_heavy_model(args.cache)
    macs = count_macs(repository / NAME / VERSION / "model.onnx")
    print(
        f"{NAME} v{VERSION} in {repository}: {macs.total / 1e9:.3f} GMAC per window, "
        f"front end {macs.front_end / 1e6:.1f} M ({macs.stft_share:.0%}), "
        f"of it STFT {macs.stft / 1e6:.1f} M"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
