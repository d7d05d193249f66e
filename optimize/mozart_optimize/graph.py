"""Reading and rewriting ONNX graphs: the log-mel front end, and ORT's offline optimization.

The front end is every node from the waveform input to the first `Log`, plus the
elementwise normalisation right after it. It computes a power spectrum whose range
INT8 cannot hold and FP16 overflows, so every optimizer keeps it in FP32.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort

# What may follow the Log and still belong to the front end (normalise, add a channel).
_NORMALISATION_OPS = frozenset({"Sub", "Div", "Mul", "Add", "Unsqueeze", "Clip"})


class GraphError(ValueError):
    """The graph lacks what an optimizer needs (e.g. no log-mel front end)."""


def front_end_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the front-end nodes, in graph order.

    Raises:
        GraphError: the graph has no Log node, so no front end can be told apart.
    """
    nodes = list(model.graph.node)
    log_at = next((i for i, node in enumerate(nodes) if node.op_type == "Log"), None)
    if log_at is None:
        raise GraphError("the graph has no Log node: cannot find its log-mel front end")
    end = log_at + 1
    while end < len(nodes) and nodes[end].op_type in _NORMALISATION_OPS:
        end += 1
    unnamed = [i for i, node in enumerate(nodes[:end]) if not node.name]
    if unnamed:
        raise GraphError(f"front-end nodes {unnamed} have no name, so they cannot be excluded")
    return [node.name for node in nodes[:end]]


def first_conv_after(model: onnx.ModelProto, front_end: list[str]) -> str | None:
    """The first Conv node after the front end (the CNN's first layer), if any."""
    nodes = list(model.graph.node)
    for node in nodes[len(front_end) :]:
        if node.op_type == "Conv":
            return node.name
    return None


def optimize_offline(source: Path, target: Path) -> None:
    """Saves ORT's extended graph optimizations of `source` as `target`.

    Extended, not all: level `all` adds layout rewrites tied to this CPU's instruction set,
    which ORT says not to save for other machines.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])
