"""`mozart optimize`: build each optimized artifact of a version, gate it, and record it.

Stages, each optional (`--only`):

1. ``opt``: ORT's offline FP32 graph optimization, `model.opt.onnx`, gated on parity.
2. ``int8``: static INT8 QDQ, `model.int8.onnx`, gated on agreement and accuracy drop.
3. ``tensorrt``: a TensorRT plan, `model.plan`: INT8 from a symmetric Q/DQ graph
   quantized for TensorRT, else FP16 from model.onnx when the INT8 plan is refused;
   skipped, with the reason, without TensorRT and a GPU.

Every candidate is built in a temporary folder inside the version folder and moved in
only when both its gates pass; a refused candidate is not written, and an older record
of the same file is removed with its file.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import onnx

from mozart_optimize import graph
from mozart_optimize.gates import (
    SplitAccuracy,
    Thresholds,
    accuracy_failures,
    speed_failures,
    split_accuracy,
)
from mozart_optimize.measure import SpeedComparison, compare_speed, probabilities
from mozart_optimize.quantize import quantize_int8
from mozart_optimize.records import CARD_FILE, update_card, update_manifest
from mozart_optimize.windows import LabelledWindows, calibration_sample, load_windows
from mozart_server.engines import Engine
from mozart_server.engines.artifacts import REFERENCE, Artifact, BatchProfile, file_sha256
from mozart_server.engines.onnx import OnnxEngine
from mozart_server.models.manifest import MANIFEST_FILE, Manifest
from mozart_server.settings import OnnxSettings, ServerSettings
from mozart_server.tensors import FloatArray

STAGES = ("opt", "int8", "tensorrt")
Status = Literal["admitted", "refused", "skipped"]
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class Options:
    """Everything a run needs besides the version folder."""

    data_root: Path
    gate_splits: tuple[str, ...] = ("test", "test_timbre")
    calibration_split: str = "train"
    calibration_windows: int = 256
    seed: int = 0
    stages: tuple[str, ...] = STAGES
    thresholds: Thresholds = field(default_factory=Thresholds)
    batch_sizes: tuple[int, ...] = (1, 4, 8, 16)
    speed_seconds: float = 3.0
    #: The provider FP32 runs on when a TensorRT plan's speed is compared.
    reference_provider: str = CPU


@dataclass
class StageResult:
    """What one stage built and why it was admitted, refused or skipped."""

    stage: str
    file: str
    status: Status
    reasons: list[str] = field(default_factory=list)
    accuracy: dict[str, SplitAccuracy] = field(default_factory=dict)
    speed: SpeedComparison | None = None
    record: dict[str, Any] | None = None


@dataclass
class Run:
    """A whole run: the version, its stages, and the records now in model.json."""

    version_dir: Path
    model: str
    version: str
    options: Options
    stages: list[StageResult] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when some artifact was refused by a gate."""
        return any(stage.status == "refused" for stage in self.stages)


def _tools(*names: str) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _machine() -> dict[str, str]:
    return {"cpu": platform.processor() or platform.machine(), "cpus": str(os.cpu_count())}


class Optimizer:
    """Runs the stages on one version folder, reporting progress through `say`."""

    def __init__(
        self, version_dir: Path, options: Options, say: Callable[[str], None] = print
    ) -> None:
        """Reads model.json and the serving settings (MOZART_* variables apply).

        Raises:
            FileNotFoundError: no model.onnx or model.json.
            pydantic.ValidationError: model.json is not one the server would serve.
        """
        self.version_dir = version_dir
        self.options = options
        self.say = say
        for required in ("model.onnx", MANIFEST_FILE):
            if not (version_dir / required).is_file():
                raise FileNotFoundError(f"{version_dir / required} does not exist")
        self.manifest = Manifest.model_validate_json((version_dir / MANIFEST_FILE).read_text())
        self.serving = ServerSettings()
        self._splits: dict[str, LabelledWindows] = {}
        self._reference: dict[str, FloatArray] = {}
        self._calibration_windows: FloatArray | None = None

    def _engine(self, path: Path, artifact: Artifact, provider: str = CPU) -> OnnxEngine:
        serving = self.serving.engine.onnx.model_dump()
        settings = OnnxSettings.model_validate(serving | {"providers": [provider], "instances": 1})
        return OnnxEngine(path, settings, artifact)

    def _calibration(self) -> FloatArray:
        if self._calibration_windows is None:
            options = self.options
            self._calibration_windows = calibration_sample(
                options.data_root, options.calibration_split, self.manifest,
                options.calibration_windows, options.seed,
            )  # fmt: skip
        return self._calibration_windows

    def _gate_windows(self) -> dict[str, LabelledWindows]:
        if not self._splits:
            for split in self.options.gate_splits:
                self._splits[split] = load_windows(self.options.data_root, split, self.manifest)
                self.say(f"  gate split {split}: {len(self._splits[split])} windows")
            reference = self._engine(self.version_dir / "model.onnx", REFERENCE)
            for split, windows in self._splits.items():
                self._reference[split] = probabilities(reference, windows.windows)
            reference.close()
        return self._splits

    def _accuracy(self, engine: Engine) -> dict[str, SplitAccuracy]:
        results = {}
        for split, windows in self._gate_windows().items():
            scores = probabilities(engine, windows.windows)
            results[split] = split_accuracy(split, windows.labels, self._reference[split], scores)
            result = results[split]
            self.say(
                f"  {split}: agreement {result.agreement:.2%}, window accuracy "
                f"{result.reference_accuracy:.3f} -> {result.candidate_accuracy:.3f}"
            )
        return results

    def _speed(self, candidate: Engine, reference_provider: str = CPU) -> SpeedComparison:
        reference = self._engine(self.version_dir / "model.onnx", REFERENCE, reference_provider)
        try:
            sample = next(iter(self._gate_windows().values())).windows
            sizes = [
                s for s in self.options.batch_sizes if s <= self.serving.batching.max_batch_size
            ]
            return compare_speed(
                reference,
                candidate,
                sample[: max(sizes)],
                sizes,
                seconds=self.options.speed_seconds,
                progress=lambda line: self.say("  " + line),
            )
        finally:
            reference.close()

    def _gate(
        self,
        result: StageResult,
        engine: Engine,
        *,
        parity: bool,
        reference_provider: str = CPU,
    ) -> None:
        self.say("  accuracy gate")
        result.accuracy = self._accuracy(engine)
        result.reasons = accuracy_failures(result.accuracy, self.options.thresholds, parity=parity)
        if result.reasons:
            result.status = "refused"
            return
        self.say("  speed gate")
        result.speed = self._speed(engine, reference_provider)
        self.say(
            f"  batch-1 latency ratio {result.speed.batch1_latency_ratio:.2f}, best throughput "
            f"ratio {result.speed.best_throughput_ratio:.2f}"
        )
        result.reasons = speed_failures(result.speed.best_throughput_ratio, self.options.thresholds)
        result.status = "refused" if result.reasons else "admitted"

    def _record(
        self, result: StageResult, path: Path, artifact: Artifact, extra: dict[str, Any]
    ) -> dict[str, Any]:
        assert result.speed is not None  # admitted artifacts were timed
        speed = result.speed.as_dict() | {"machine": _machine()}
        return {
            "file": artifact.file,
            "kind": artifact.kind,
            "precision": artifact.precision,
            "provider": artifact.provider,
            "batch_profile": artifact.batch_profile.model_dump()
            if artifact.batch_profile
            else None,
            "speed": speed,
            "accuracy": {
                "splits": {name: value.as_dict() for name, value in result.accuracy.items()},
                "thresholds": {
                    "min_agreement": self.options.thresholds.min_agreement,
                    "max_accuracy_drop_points": self.options.thresholds.max_accuracy_drop_points,
                    "min_speedup": self.options.thresholds.min_speedup,
                },
            },
            "sha256": file_sha256(path),
            "size_bytes": path.stat().st_size,
            "tools": _tools("onnxruntime", "onnx", "numpy", "mozart-optimize")
            | extra.pop("tools", {}),
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            **extra,
        }

    def _profile(self) -> BatchProfile:
        batching = self.serving.batching
        return BatchProfile(
            min=1, opt=max(batching.preferred_batch_sizes), max=batching.max_batch_size
        )

    def _stage_opt(self, work: Path) -> StageResult:
        result = StageResult("opt", "model.opt.onnx", "refused")
        candidate = work / result.file
        self.say("[opt] ORT offline graph optimization (level extended)")
        graph.optimize_offline(self.version_dir / "model.onnx", candidate)
        artifact = Artifact(file=result.file, kind="onnxruntime", precision="fp32", provider=CPU,
                            batch_profile=self._profile())  # fmt: skip
        self._run_onnx_gates(
            result, candidate, artifact, parity=True, extra={"graph_optimization_level": "extended"}
        )
        return result

    def _stage_int8(self, work: Path) -> StageResult:
        result = StageResult("int8", "model.int8.onnx", "refused")
        candidate = work / result.file
        options = self.options
        self.say(
            f"[int8] calibration: {options.calibration_windows} windows of split "
            f"{options.calibration_split!r}, seed {options.seed}"
        )
        plan = quantize_int8(
            self.version_dir / "model.onnx",
            candidate,
            self._calibration(),
            work_dir=work,
            progress=lambda done, total: (
                self.say(f"  calibrated {done}/{total} windows")
                if done == total or done % 64 == 0
                else None
            ),
        )
        self.say(f"  kept in FP32: {', '.join(plan.kept_fp32)}")
        artifact = Artifact(file=result.file, kind="onnxruntime", precision="int8", provider=CPU,
                            batch_profile=self._profile())  # fmt: skip
        extra = {
            "quantization": {
                "format": "QDQ",
                "weights": "int8, per channel",
                "activations": "uint8, per tensor, MinMax calibration",
                "calibration": {
                    "split": options.calibration_split,
                    "windows": plan.calibration_windows,
                    "seed": options.seed,
                },
                "kept_fp32": list(plan.kept_fp32),
            }
        }
        self._run_onnx_gates(result, candidate, artifact, parity=False, extra=extra)
        return result

    def _run_onnx_gates(
        self, result: StageResult, candidate: Path, artifact: Artifact, *, parity: bool,
        extra: dict[str, Any],
    ) -> None:  # fmt: skip
        engine = self._engine(candidate, artifact)
        try:
            self._gate(result, engine, parity=parity)
        finally:
            engine.close()
        if result.status == "admitted":
            result.record = self._record(result, candidate, artifact, extra)

    def _stage_tensorrt(self, work: Path) -> StageResult:
        from mozart_optimize import tensorrt_plan  # noqa: PLC0415 - TensorRT is optional

        reason = tensorrt_plan.unavailable_reason()
        if reason is not None:
            self.say(f"[tensorrt] skipped: {reason}")
            return StageResult("tensorrt", "model.plan", "skipped", [reason])
        self.say("[tensorrt] quantizing a symmetric INT8 Q/DQ graph, as TensorRT takes it")
        qdq = work / "model.tensorrt-qdq.onnx"
        quantize_int8(
            self.version_dir / "model.onnx", qdq, self._calibration(), work_dir=work,
            for_tensorrt=True,
        )  # fmt: skip
        problems = tensorrt_plan.qdq_problems(onnx.load(str(qdq)))
        candidates: list[tuple[Literal["int8", "fp16"], Path]] = [
            ("fp16", self.version_dir / "model.onnx")
        ]
        if not problems:
            candidates.insert(0, ("int8", qdq))
        reasons = [f"int8: TensorRT cannot take the Q/DQ graph: {problems[0]}"] if problems else []
        for precision, source in candidates:
            result = self._plan(work, precision, source)
            if result.status == "admitted":
                return result
            reasons += [f"{precision}: {why}" for why in result.reasons]
            self.say(f"  the {precision} plan was refused")
        result.reasons = reasons
        return result

    def _plan(self, work: Path, precision: Literal["int8", "fp16"], source: Path) -> StageResult:
        from mozart_optimize import tensorrt_plan  # noqa: PLC0415
        from mozart_server.engines.tensorrt import TensorRTEngine  # noqa: PLC0415

        result = StageResult("tensorrt", "model.plan", "refused")
        profile = self._profile()
        self.say(f"[tensorrt] building a {precision} plan from {source.name} (FP16 allowed), "
                 f"batch {profile.min}/{profile.opt}/{profile.max}")  # fmt: skip
        build = tensorrt_plan.build_plan(
            source,
            work / result.file,
            min_batch=profile.min,
            opt_batch=profile.opt,
            max_batch=profile.max,
            int8=precision == "int8",
            fp16=True,
            fp32_layers=graph.front_end_nodes(onnx.load(str(source))),
            timing_cache=self.version_dir / "optimize" / "tensorrt.timing-cache",
            log_path=work / f"tensorrt-build-{precision}.log",
            progress=lambda line: self.say("  " + line),
        )
        keep_log = self.version_dir / "optimize" / build.log.name
        keep_log.parent.mkdir(exist_ok=True)
        shutil.copyfile(build.log, keep_log)
        artifact = Artifact(
            file=result.file, kind="tensorrt", precision=precision, provider="tensorrt",
            batch_profile=profile, tools={"tensorrt": build.tensorrt_version}, device=build.device,
        )  # fmt: skip
        engine = TensorRTEngine(build.plan, self.serving.engine.tensorrt, artifact)
        try:
            self._gate(
                result, engine, parity=False, reference_provider=self.options.reference_provider
            )
        finally:
            engine.close()
        if result.status == "admitted":
            result.record = self._record(
                result, build.plan, artifact,
                {"tools": {"tensorrt": build.tensorrt_version}, "device": build.device,
                 "build_seconds": round(build.build_seconds, 1),
                 "reference_provider": self.options.reference_provider},
            )  # fmt: skip
        return result

    def run(self) -> Run:
        """Runs the chosen stages, moves in what they admitted and updates model.json."""
        run = Run(self.version_dir, self.manifest.name, self.manifest.version, self.options)
        with tempfile.TemporaryDirectory(dir=self.version_dir, prefix=".optimize-") as scratch:
            work = Path(scratch)
            builders = {"opt": self._stage_opt, "int8": self._stage_int8,
                        "tensorrt": self._stage_tensorrt}  # fmt: skip
            for stage in self.options.stages:
                run.stages.append(builders[stage](work))
                self._settle(run.stages[-1], work)
            run.artifacts = update_manifest(
                self.version_dir / MANIFEST_FILE,
                [stage.record for stage in run.stages if stage.record is not None],
                [stage.file for stage in run.stages if stage.status == "refused"],
            )
        update_card(self.version_dir / CARD_FILE, run.artifacts)
        return run

    def _settle(self, result: StageResult, work: Path) -> None:
        target = self.version_dir / result.file
        if result.status == "admitted":
            os.replace(work / result.file, target)
            self.say(f"  admitted: {target}")
        elif result.status == "refused":
            target.unlink(missing_ok=True)  # an older admitted copy no longer holds
            for reason in result.reasons:
                self.say(f"  refused: {reason}")


def optimize(version_dir: Path, options: Options, say: Callable[[str], None] = print) -> Run:
    """Runs `mozart optimize` on one version folder."""
    return Optimizer(version_dir, options, say).run()


def parse_stages(text: str | Sequence[str]) -> tuple[str, ...]:
    """Stages from "opt,int8": each must be known; order follows STAGES."""
    names = [name.strip() for name in (text.split(",") if isinstance(text, str) else text)]
    unknown = [name for name in names if name and name not in STAGES]
    if unknown:
        raise ValueError(f"unknown stages {unknown}; choose from {', '.join(STAGES)}")
    return tuple(stage for stage in STAGES if stage in names)
