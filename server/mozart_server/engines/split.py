"""Cutting a served graph at its log-mel output: a front end (waveform -> mel) and a body.

The exported graphs put the log-mel front end inside the model (trainer/mozart_trainer/
frontend.py): an STFT as a strided Conv, power, mel MatMul, Clip, Log, then the
normalisation (Sub, Div) and an Unsqueeze that adds the CNN's channel axis. The cut is
found by structure, not by node names, so it holds for FP32 and static-QDQ INT8 graphs
alike: the first Log node, then the chain of elementwise normalisation and reshaping
nodes that follows it, each the only consumer of the one before and combining it only
with constants. The tensor at the end of that chain is the mel output.

A cut is accepted only when both halves stand alone: the front end needs the waveform
input and constants only, the body needs the mel tensor and constants only, and no
graph output lies inside the front end. The front end's sample axis is made dynamic so
that the frames of a few new samples can be computed alone (streams); whether that gives
the same frames as the whole window is checked by the engine at load (engines/onnx.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnx.shape_inference
import onnx.utils

from mozart_server.tensors import FloatArray

#: Nodes that may follow the Log and still belong to the front end: its normalisation
#: and the axis the CNN wants. They combine the features with constants only.
_TAIL_OPS = frozenset({"Sub", "Div", "Mul", "Add", "Unsqueeze", "Identity"})


class SplitError(ValueError):
    """The graph has no front end that can be cut off; the message says why."""


@dataclass(frozen=True)
class SplitGraph:
    """The two halves of a graph, serialized for `ort.InferenceSession`."""

    mel_tensor: str
    front_end: bytes
    body: bytes


def _constants(graph: onnx.GraphProto) -> set[str]:
    names = {tensor.name for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and not node.input:
            names.update(node.output)
    return names


def find_mel_tensor(model: onnx.ModelProto) -> str:
    """The name of the tensor where the front end ends (the normalised log-mel).

    Raises:
        SplitError: the graph has no Log node, or what follows it is not a plain chain.
    """
    graph = model.graph
    constants = _constants(graph)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    log = next((node for node in graph.node if node.op_type == "Log"), None)
    if log is None:
        raise SplitError("the graph has no Log node, so no log-mel front end")
    tensor = log.output[0]
    outputs = {value.name for value in graph.output}
    while tensor not in outputs:
        users = consumers.get(tensor, [])
        if len(users) != 1:
            break
        (user,) = users
        others = [name for name in user.input if name and name != tensor]
        if user.op_type not in _TAIL_OPS or any(name not in constants for name in others):
            break
        tensor = user.output[0]
    if tensor in outputs:
        raise SplitError(f"the log-mel tensor {tensor!r} is a graph output: nothing to cut off")
    return tensor


def _needed_inputs(graph: onnx.GraphProto) -> set[str]:
    """Tensors the graph's nodes read that neither a node nor an initializer makes."""
    made = {tensor.name for tensor in graph.initializer}
    needed: set[str] = set()
    for node in graph.node:
        needed.update(name for name in node.input if name and name not in made)
        made.update(node.output)
    return needed


def split_graph(model: onnx.ModelProto) -> SplitGraph:
    """Cuts `model` at its log-mel output into a front end and a body.

    Raises:
        SplitError: no front end is found, or one of the halves would need the other's
            tensors (e.g. a skip connection from the waveform into the body).
    """
    if len(model.graph.input) != 1:
        raise SplitError("the graph has more than one input")
    waveform = model.graph.input[0].name
    mel = find_mel_tensor(model)
    inferred = onnx.shape_inference.infer_shapes(model)
    extractor = onnx.utils.Extractor(inferred)
    outputs = [value.name for value in model.graph.output]
    try:
        front_end = extractor.extract_model([waveform], [mel])
        body = extractor.extract_model([mel], outputs)
    except (ValueError, KeyError) as error:
        raise SplitError(f"the graph cannot be cut at {mel!r}: {error}") from error
    for half, allowed, name in ((front_end, waveform, "front end"), (body, mel, "body")):
        stray = _needed_inputs(half.graph) - {allowed}
        if stray:
            raise SplitError(f"the {name} would need tensors of the other half: {sorted(stray)}")
    _free_sample_axis(front_end)
    return SplitGraph(mel, front_end.SerializeToString(), body.SerializeToString())


def _free_sample_axis(front_end: onnx.ModelProto) -> None:
    """Makes the front end take any number of samples (and give any number of frames)."""
    graph = front_end.graph
    del graph.value_info[:]  # shapes inferred for a full window would pin the frame count
    for value in (graph.input[0], graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        for axis in (0, len(dims) - 1):  # batch and time are the first and last axes
            if 0 <= axis < len(dims):
                dims[axis].Clear()
                dims[axis].dim_param = "batch" if axis == 0 else "time"


@dataclass(frozen=True)
class FrameGeometry:
    """Where a split front end's frames lie: frame k covers samples [k*hop, k*hop + n_fft).

    Checked at load against the engine (models/loader.py). ONNX Runtime computes the
    same frame bit for bit only when it computes it the same way, and its kernels change
    with the number of frames in one run (e.g. at most 64 frames take another path on
    x86) and, with several threads, with long runs; an INT8 body is not continuous in
    its input (a change in the last bit of a frame can move a score by 1e-2), so the
    frames must be the window's own, bit for bit. So frames are computed in runs of
    `min_run_frames` to `window_frames` frames, the sizes found exact at load.
    """

    n_fft: int
    hop_length: int
    window_frames: int  # frames of one model window
    #: The fewest frames one front-end run may compute and match the window's bit for bit.
    min_run_frames: int = 1

    def divides(self, hop_samples: int) -> bool:
        """Whether windows `hop_samples` apart start on a frame (so they can share frames)."""
        return hop_samples % self.hop_length == 0

    def frames_in(self, samples: int) -> int:
        """Frames that fit in `samples` samples (center=False)."""
        return 0 if samples < self.n_fft else 1 + (samples - self.n_fft) // self.hop_length

    def run_samples(self, frames: int) -> int:
        """Samples that hold exactly `frames` frames."""
        return (frames - 1) * self.hop_length + self.n_fft


def span_frames(
    features: Callable[[FloatArray], FloatArray], geometry: FrameGeometry, samples: FloatArray
) -> FloatArray:
    """The frames of a run of samples, each computed as its window computes it.

    The run is cut into pieces of `window_frames` frames, computed in one batch; the
    last piece, when shorter than `min_run_frames`, is computed as the run's last
    `window_frames` frames instead (or as the whole run, if it is shorter than that).

    Args:
        features: the engine's front end, [batch, samples] -> [batch, 1, n_mels, frames].
        geometry: where the frames lie.
        samples: mono samples, starting on a frame.

    Returns:
        [1, 1, n_mels, frames_in(len(samples))] float32.
    """
    total = geometry.frames_in(len(samples))
    size, hop = geometry.window_frames, geometry.hop_length
    if total <= size:
        return features(samples[np.newaxis, : geometry.run_samples(total)])
    whole = total // size
    length = geometry.run_samples(size)
    pieces = np.stack([samples[i * size * hop : i * size * hop + length] for i in range(whole)])
    computed = features(pieces)  # [whole, 1, n_mels, size]
    parts = [np.concatenate(list(computed), axis=-1)[np.newaxis]]
    rest = total - whole * size
    if rest:
        first = total - max(rest, geometry.min_run_frames)
        last = features(
            samples[np.newaxis, first * hop : first * hop + geometry.run_samples(total - first)]
        )
        parts.append(last[..., -rest:])
    return np.concatenate(parts, axis=-1)
