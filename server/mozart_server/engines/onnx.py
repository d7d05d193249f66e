"""The ONNX Runtime engine: N sessions with the thread and provider settings of OnnxSettings."""

from __future__ import annotations

import functools
import logging
import queue
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from mozart_server.engines.artifacts import REFERENCE, Artifact
from mozart_server.engines.base import EngineOutputs
from mozart_server.engines.split import SplitError, split_graph
from mozart_server.errors import ModelLoadError
from mozart_server.settings import GraphOptimizationLevel, OnnxSettings, ProviderMismatch
from mozart_server.tensors import FloatArray, TensorSpec

logger = logging.getLogger(__name__)

_OPTIMIZATION_LEVELS = {
    GraphOptimizationLevel.DISABLE: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    GraphOptimizationLevel.BASIC: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    GraphOptimizationLevel.EXTENDED: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    GraphOptimizationLevel.ALL: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_CPU_PROVIDERS = frozenset(
    {"CPUExecutionProvider", "DnnlExecutionProvider", "XnnpackExecutionProvider"}
)
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64"}


def _spec(node: ort.NodeArg) -> TensorSpec:
    shape = tuple(dim if isinstance(dim, int) else -1 for dim in node.shape)
    return TensorSpec(name=node.name, dtype=_ORT_DTYPES.get(node.type, node.type), shape=shape)


def session_options(settings: OnnxSettings) -> ort.SessionOptions:
    """Builds ORT session options from the thread, spinning and optimization settings."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.graph_optimization_level = _OPTIMIZATION_LEVELS[settings.graph_optimization_level]
    # Spinning threads burn whole cores while they wait for work; off by default.
    spinning = "1" if settings.allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    return options


#: How far the split graph's outputs may stray from the full graph's on the load probe.
SPLIT_TOLERANCE = 1e-4
_OUTPUTS = ["probabilities", "logits", "embedding"]


@dataclass(frozen=True)
class _Instance:
    """One batch at a time: the full graph, or (when split) the body."""

    full: ort.InferenceSession | None = None
    body: ort.InferenceSession | None = None


def _outputs(values: Sequence[Any]) -> EngineOutputs:
    probabilities, logits, embedding = (np.asarray(value, dtype=np.float32) for value in values)
    return EngineOutputs(probabilities, logits, embedding)


def _session(
    model: str | bytes, *, options: ort.SessionOptions, providers: list[str]
) -> ort.InferenceSession:
    return ort.InferenceSession(model, sess_options=options, providers=providers)


class OnnxEngine:
    """Runs a model on `instances` ONNX Runtime sessions, one batch per session at a time.

    At load the graph is cut at its log-mel output (engines/split.py), and each instance
    is a front-end and a body session, so that `features` and `run_features` run either
    half. The halves must give the full graph's outputs on a probe batch (within
    SPLIT_TOLERANCE), and the frames of a shorter input must be the first frames of the
    whole window's; otherwise, or when no front end is found, the full graph serves and
    `split_note` says why.
    """

    kind = "onnxruntime"

    def __init__(
        self, model_file: Path, settings: OnnxSettings, artifact: Artifact = REFERENCE
    ) -> None:
        """Creates the sessions and checks that ORT runs the provider asked for.

        Raises:
            ModelLoadError: when ORT cannot load the model, or (on_provider_mismatch=fail)
                runs another provider than the first one in `providers`.
        """
        available = ort.get_available_providers()
        wanted = settings.providers
        unknown = [name for name in wanted if name not in available]
        if unknown and settings.on_provider_mismatch is ProviderMismatch.FAIL:
            raise ModelLoadError(f"providers {unknown} are not available here (have {available})")
        usable = [name for name in wanted if name in available] or ["CPUExecutionProvider"]
        options = session_options(settings)
        self._make = functools.partial(_session, options=options, providers=usable)
        try:
            full = self._make(str(model_file))
        except Exception as error:  # ORT raises its own unexported exception types
            raise ModelLoadError(f"ONNX Runtime cannot load {model_file}: {error}") from error
        running = full.get_providers()
        if running[0] != wanted[0]:
            # ORT falls back to CPU silently when a GPU provider fails to load.
            message = f"asked for provider {wanted[0]} but ONNX Runtime runs {running}"
            if settings.on_provider_mismatch is ProviderMismatch.FAIL:
                raise ModelLoadError(message)
            logger.warning(message, extra={"model_file": str(model_file)})
        self._inputs = [_spec(node) for node in full.get_inputs()]
        self._outputs = [_spec(node) for node in full.get_outputs()]
        self._input_name = self._inputs[0].name
        self._mel_name = ""
        self._front_input = ""
        # One front-end session for every caller (ORT runs a session from many threads at
        # once): batches in the worker threads, and streams' new frames from theirs.
        self._front_end: ort.InferenceSession | None = None
        try:
            first, self.split_note, body = self._cut(model_file, full)
            if first.full is None:
                del full  # the full graph was only the probe's reference
                extra = [_Instance(body=self._make(body)) for _ in range(settings.instances - 1)]
            else:
                extra = [_Instance(full=self._make(str(model_file)))
                         for _ in range(settings.instances - 1)]  # fmt: skip
        except Exception as error:  # ORT raises its own unexported exception types
            raise ModelLoadError(f"ONNX Runtime cannot load {model_file}: {error}") from error
        self._instances = [first, *extra]
        self._free: queue.SimpleQueue[_Instance] = queue.SimpleQueue()
        for instance in self._instances:
            self._free.put(instance)
        self.providers = running
        self.artifact = artifact
        self.device = "cpu" if running[0] in _CPU_PROVIDERS else "gpu"

    def _cut(self, model_file: Path, full: ort.InferenceSession) -> tuple[_Instance, str, bytes]:
        """The first instance, split when the cut holds; the note on the cut; the body's graph."""
        unsplit = _Instance(full=full)
        try:
            cut = split_graph(onnx.load(str(model_file)))
        except SplitError as error:
            return unsplit, str(error), b""
        except Exception as error:  # onnx's parser and shape inference raise their own types
            return unsplit, f"the graph cannot be read for cutting: {error}", b""
        window = self._inputs[0].shape[1] if len(self._inputs[0].shape) == 2 else -1
        if window <= 0:
            return unsplit, "the waveform input has no fixed window length", b""
        try:
            front_end, body = self._make(cut.front_end), self._make(cut.body)
        except Exception as error:  # ORT raises its own unexported exception types
            return unsplit, f"ONNX Runtime cannot load the halves: {error}", b""
        self._mel_name = cut.mel_tensor
        self._front_input = front_end.get_inputs()[0].name
        reason = self._probe(window, full, front_end, body)
        if reason is not None:
            return unsplit, reason, b""
        self._front_end = front_end
        return _Instance(body=body), f"cut at {cut.mel_tensor!r}", cut.body

    def _probe(
        self,
        window: int,
        full: ort.InferenceSession,
        front_end: ort.InferenceSession,
        body: ort.InferenceSession,
    ) -> str | None:
        """Why the halves cannot stand for the full graph; None when they can."""
        probe = (0.1 * np.random.default_rng(0).standard_normal((2, window))).astype(np.float32)
        try:
            expected = full.run(_OUTPUTS, {self._input_name: probe})
            (mel,) = front_end.run([self._mel_name], {self._front_input: probe})
            if mel.ndim != 4 or mel.shape[1] != 1:
                return f"the front end gives {list(mel.shape)}, not [batch, 1, n_mels, frames]"
            got = body.run(_OUTPUTS, {self._mel_name: mel})
            (prefix,) = front_end.run(
                [self._mel_name], {self._front_input: probe[:, : window // 2]}
            )
        except Exception as error:  # e.g. a front end that only takes whole windows
            return f"the halves do not run alone: {error}"
        worst = max(float(np.max(np.abs(a - b))) for a, b in zip(expected, got, strict=True))
        if worst > SPLIT_TOLERANCE:
            return f"the halves differ from the full graph by {worst:.2e}"
        frames = prefix.shape[-1]
        if prefix.ndim != 4 or not np.allclose(prefix, mel[..., :frames], atol=SPLIT_TOLERANCE):
            return "the frames of half a window are not the first frames of the whole one"
        return None

    @property
    def split(self) -> bool:
        """Whether the front end and the body run as two sessions."""
        return self._front_end is not None

    @property
    def instances(self) -> int:
        """How many batches can run at the same time."""
        return len(self._instances)

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        """The graph's inputs."""
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        """The graph's outputs."""
        return self._outputs

    def run(self, waveforms: FloatArray) -> EngineOutputs:
        """Runs one batch on a free instance (blocks if all are busy): front end, then body."""
        instance = self._free.get()
        try:
            if instance.full is not None:
                return _outputs(instance.full.run(_OUTPUTS, {self._input_name: waveforms}))
            assert instance.body is not None
            return _outputs(instance.body.run(_OUTPUTS, {self._mel_name: self.features(waveforms)}))
        finally:
            self._free.put(instance)

    def features(self, waveforms: FloatArray) -> FloatArray:
        """Mel frames of [batch, samples] (any length of one STFT frame or more).

        Raises:
            NotImplementedError: the engine is not split.
        """
        if self._front_end is None:
            raise NotImplementedError(self.split_note)
        (mel,) = self._front_end.run([self._mel_name], {self._front_input: waveforms})
        return np.asarray(mel, dtype=np.float32)

    def run_features(self, features: FloatArray) -> EngineOutputs:
        """Runs the body on mel windows [batch, 1, n_mels, frames] on a free instance.

        Raises:
            NotImplementedError: the engine is not split.
        """
        if self._front_end is None:
            raise NotImplementedError(self.split_note)
        instance = self._free.get()
        try:
            assert instance.body is not None
            return _outputs(instance.body.run(_OUTPUTS, {self._mel_name: features}))
        finally:
            self._free.put(instance)

    def close(self) -> None:
        """Drops the sessions; ORT frees them when the last reference goes."""
        self._instances.clear()
        self._front_end = None
