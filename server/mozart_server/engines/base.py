"""The engine protocol: what the batcher needs from a runtime (ONNX Runtime or TensorRT)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mozart_server.engines.artifacts import Artifact
from mozart_server.tensors import FloatArray, TensorSpec


@dataclass(frozen=True)
class EngineOutputs:
    """One batch's outputs; row i belongs to input row i."""

    probabilities: FloatArray
    logits: FloatArray
    embedding: FloatArray

    def rows(self, start: int, stop: int) -> EngineOutputs:
        """Returns the outputs of input rows start..stop-1."""
        return EngineOutputs(
            self.probabilities[start:stop], self.logits[start:stop], self.embedding[start:stop]
        )


class Engine(Protocol):
    """Runs batches of windows. `run` is called from worker threads, up to `instances` at once."""

    @property
    def kind(self) -> str:
        """The engine kind that built it (EngineKind.name, e.g. "onnxruntime")."""

    @property
    def artifact(self) -> Artifact:
        """The artifact it serves: file, precision, and the figures that admitted it."""

    @property
    def device(self) -> str:
        """Where its batches run: "cpu" or "gpu"."""

    @property
    def instances(self) -> int:
        """How many batches the engine can run at the same time."""

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        """The graph's inputs, dynamic dimensions as -1."""

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        """The graph's outputs, dynamic dimensions as -1."""

    @property
    def split(self) -> bool:
        """Whether the front end runs apart from the body (`features`, `run_features` work)."""

    @property
    def split_note(self) -> str:
        """Where the graph was cut, or why it was not (logged at load)."""

    def run(self, waveforms: FloatArray) -> EngineOutputs:
        """Runs one batch of shape [batch, window_samples]; thread-safe up to `instances`."""

    def features(self, waveforms: FloatArray) -> FloatArray:
        """The front end alone: [batch, samples] -> mel frames [batch, 1, n_mels, frames].

        Any number of samples of at least one STFT frame; thread-safe, from any thread.

        Raises:
            NotImplementedError: the engine is not split.
        """

    def run_features(self, features: FloatArray) -> EngineOutputs:
        """The body alone, on mel windows [batch, 1, n_mels, frames]; thread-safe up to `instances`.

        Raises:
            NotImplementedError: the engine is not split.
        """

    def close(self) -> None:
        """Releases the engine's sessions."""
