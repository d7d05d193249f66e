"""The ONNX Runtime engine: N sessions with the thread and provider settings of OnnxSettings."""

from __future__ import annotations

import logging
import queue
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from mozart_server.engines.artifacts import REFERENCE, Artifact
from mozart_server.engines.base import EngineOutputs
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


class OnnxEngine:
    """Runs a model on `instances` ONNX Runtime sessions, one batch per session at a time."""

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
        try:
            self._sessions = [
                ort.InferenceSession(str(model_file), sess_options=options, providers=usable)
                for _ in range(settings.instances)
            ]
        except Exception as error:  # ORT raises its own unexported exception types
            raise ModelLoadError(f"ONNX Runtime cannot load {model_file}: {error}") from error
        running = self._sessions[0].get_providers()
        if running[0] != wanted[0]:
            # ORT falls back to CPU silently when a GPU provider fails to load.
            message = f"asked for provider {wanted[0]} but ONNX Runtime runs {running}"
            if settings.on_provider_mismatch is ProviderMismatch.FAIL:
                raise ModelLoadError(message)
            logger.warning(message, extra={"model_file": str(model_file)})
        self._free: queue.SimpleQueue[ort.InferenceSession] = queue.SimpleQueue()
        for session in self._sessions:
            self._free.put(session)
        first = self._sessions[0]
        self._inputs = [_spec(node) for node in first.get_inputs()]
        self._outputs = [_spec(node) for node in first.get_outputs()]
        self._input_name = self._inputs[0].name
        self.providers = running
        self.artifact = artifact
        self.device = "cpu" if running[0] in _CPU_PROVIDERS else "gpu"

    @property
    def instances(self) -> int:
        """How many batches can run at the same time."""
        return len(self._sessions)

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        """The graph's inputs."""
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        """The graph's outputs."""
        return self._outputs

    def run(self, waveforms: FloatArray) -> EngineOutputs:
        """Runs one batch on a free session (blocks if all are busy)."""
        session = self._free.get()
        try:
            probabilities, logits, embedding = session.run(
                ["probabilities", "logits", "embedding"], {self._input_name: waveforms}
            )
        finally:
            self._free.put(session)
        return EngineOutputs(
            np.asarray(probabilities, dtype=np.float32),
            np.asarray(logits, dtype=np.float32),
            np.asarray(embedding, dtype=np.float32),
        )

    def close(self) -> None:
        """Drops the sessions; ORT frees them when the last reference goes."""
        self._sessions.clear()
