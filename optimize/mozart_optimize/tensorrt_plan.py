"""Builds a TensorRT plan (model.plan) from an ONNX graph, with the log-mel front end in FP32.

This code has not run on this project's CI machines: they have no GPU, and TensorRT is not
installed there, so CI runs only what needs neither (the reason it cannot build, and the
checks of a Q/DQ graph made before TensorRT is imported). `optimize/gpu_check.sh` runs it
on a machine with an NVIDIA GPU, TensorRT 10 and cuda-python.

The build is TensorRT 10's weakly typed one: BuilderFlag.FP16 lets TensorRT pick FP16
kernels, BuilderFlag.INT8 runs the Q/DQ regions of a quantized graph in INT8 (explicit
quantization, no calibrator), and the front end's layers are pinned to FP32, because its
power spectrum overflows FP16. TensorRT 11 removed those flags and per-layer precisions
(strong typing only), so `unavailable_reason` refuses it rather than build something else.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import numpy as np
import onnx
from onnx import numpy_helper

from mozart_server.engines.tensorrt import (
    check_cuda,
    cuda_runtime,
    describe_device,
    runtime_problem,
)

#: The TensorRT major version whose builder API this module is written against.
TENSORRT_MAJOR = 10
_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# What TensorRT's Q/DQ layers quantize to (INT4 and FP8 as well as INT8, in TensorRT 10).
_QUANTIZED_TYPES = frozenset(
    {onnx.TensorProto.INT8, onnx.TensorProto.INT4, onnx.TensorProto.FLOAT8E4M3FN}
)
# The ONNX parser records each layer's node as "[ONNX Layer: <node name>]" in its metadata.
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]\x1e\x1f]+)\]")
_SEVERITY_NAMES = {0: "INTERNAL_ERROR", 1: "ERROR", 2: "WARNING", 3: "INFO", 4: "VERBOSE"}
_WARNING = 2


@dataclass(frozen=True)
class PlanBuild:
    """A plan that was built, and what it was built with (its model.json record's figures)."""

    plan: Path
    tensorrt_version: str
    #: The GPU's name and compute capability, under the keys the server compares
    #: (mozart_server.engines.tensorrt.DEVICE_KEYS).
    device: dict[str, str]
    #: "int8" (a Q/DQ graph, FP16 elsewhere when asked), "fp16", or "fp32" when neither.
    precision: str
    build_seconds: float
    log: Path


def unavailable_reason() -> str | None:
    """Why a plan cannot be built here (no TensorRT 10, no CUDA bindings, no GPU), or None.

    Never raises.
    """
    try:
        problem = runtime_problem(0)
        if problem is not None:
            return problem
        version = str(importlib.import_module("tensorrt").__version__)
    except Exception as error:  # an odd install is a reason, never a crash of the pipeline
        return f"probing TensorRT and CUDA failed: {type(error).__name__}: {error}"
    major = version.split(".", 1)[0]
    if major != str(TENSORRT_MAJOR):
        return (
            f"TensorRT {version} is installed; plans are built with TensorRT "
            f"{TENSORRT_MAJOR}'s FP16/INT8 builder flags and per-layer FP32 pins, which "
            f"TensorRT {major} does not have (install tensorrt {TENSORRT_MAJOR}.x)"
        )
    return None


def qdq_problems(model: onnx.ModelProto) -> list[str]:
    """What in a Q/DQ graph TensorRT cannot take, one line per node; empty when it can.

    TensorRT quantizes symmetrically to signed 8-bit types: every zero point must be of
    such a type and all zeros, and a DequantizeLinear of a constant must read one (not an
    INT32 bias). ONNX Runtime's defaults break both: QUInt8 activations with nonzero zero
    points, and biases quantized to INT32.
    """
    constants = {tensor.name: tensor for tensor in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            constants[node.output[0]] = node.attribute[0].t
    problems = []
    for node in model.graph.node:
        if node.op_type not in _QDQ_OPS:
            continue
        quantized = constants.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if quantized is not None and quantized.data_type not in _QUANTIZED_TYPES:
            problems.append(f"{node.name}: dequantizes {_type_name(quantized)} data")
        if len(node.input) < 3 or not node.input[2]:
            continue  # no zero point: 0
        zero_point = constants.get(node.input[2])
        if zero_point is None:
            problems.append(f"{node.name}: zero point {node.input[2]} is not a constant")
        elif zero_point.data_type not in _QUANTIZED_TYPES:
            problems.append(f"{node.name}: zero point is {_type_name(zero_point)}")
        elif np.any(numpy_helper.to_array(zero_point)):
            problems.append(f"{node.name}: zero point is not 0 (asymmetric)")
    return problems


def _type_name(tensor: onnx.TensorProto) -> str:
    return str(onnx.TensorProto.DataType.Name(tensor.data_type))


def onnx_nodes_of_layer(layer_name: str, metadata: str, node_names: Sequence[str]) -> set[str]:
    """The ONNX nodes a TensorRT network layer was made from.

    TensorRT's ONNX parser records the node in the layer's metadata
    ("[ONNX Layer: node_log]"); that is used when present. Otherwise the layer's name is
    matched: the parser names a node's layers after the node, the first one exactly and
    any further ones with a suffix ("node_mul_8", "node_mul_8_1"), so the longest node
    name that equals the layer name or prefixes it before a "_" wins.
    """
    recorded = set(_ONNX_LAYER.findall(metadata))
    if recorded:
        return recorded
    matches = [
        name for name in node_names if layer_name == name or layer_name.startswith(name + "_")
    ]
    return {max(matches, key=len)} if matches else set()


def build_plan(
    onnx_path: Path,
    plan_path: Path,
    *,
    min_batch: int,
    opt_batch: int,
    max_batch: int,
    int8: bool,
    fp16: bool,
    fp32_layers: Sequence[str],
    timing_cache: Path,
    log_path: Path,
    progress: Callable[[str], None] = print,
) -> PlanBuild:
    """Builds `plan_path` from `onnx_path` with one batch profile min/opt/max.

    Args:
        int8: the graph is a Q/DQ one; its quantized regions run in INT8.
        fp16: TensorRT may run the other layers in FP16.
        fp32_layers: ONNX node names whose layers stay FP32 (the log-mel front end).
        timing_cache: read when it exists (if it is from this TensorRT and GPU) and
            written back after the build, so a rebuild skips most kernel timing.
        log_path: every TensorRT message goes there; warnings and errors also to
            `progress`.

    Raises:
        ValueError: the batch sizes are not 1 <= min <= opt <= max, or `int8` is asked of
            a graph without Q/DQ nodes or with Q/DQ nodes TensorRT cannot take (checked
            before TensorRT is imported).
        RuntimeError: TensorRT cannot run here, its parser refused the graph, no layer of
            `fp32_layers` was found, or the build failed; the message names the log.
    """
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(f"batch profile must be 1 <= min <= opt <= max, got {min_batch}/"
                         f"{opt_batch}/{max_batch}")  # fmt: skip
    model = onnx.load(str(onnx_path), load_external_data=False)
    if int8:
        _check_int8_graph(onnx_path, model)
    node_names = [node.name for node in model.graph.node if node.name]
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"cannot build a TensorRT plan here: {reason}")
    trt = importlib.import_module("tensorrt")
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as log_file:
        logger = _build_logger(trt, log_file, progress)
        builder = trt.Builder(logger)
        # Networks are always explicit-batch in TensorRT 10 (flag 0). Not STRONGLY_TYPED:
        # that mode takes every type from the graph alone and forbids the per-layer FP32
        # pins below, so FP16 would need an FP16 graph.
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            said = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(
                f"TensorRT's ONNX parser refused {onnx_path}: {said or 'no message'} "
                f"(log: {log_path})"
            )
        config = builder.create_builder_config()
        config.add_optimization_profile(
            _batch_profile(builder, network, min_batch, opt_batch, max_batch)
        )
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        if int8:
            config.set_flag(trt.BuilderFlag.INT8)
        if fp32_layers:
            missing = _pin_fp32(trt, network, fp32_layers, node_names, log_path)
            if missing:
                progress(f"warning: no layer found for the FP32 nodes {missing}; not pinned")
            # Prefer, not obey: a layer with no FP32 kernel falls back with a warning (in
            # the log and in `progress`) instead of failing the build; the accuracy gate
            # then judges the plan.
            config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        cache = _attach_timing_cache(config, timing_cache, progress)
        progress(f"building the plan (batch {min_batch}/{opt_batch}/{max_batch}); log: {log_path}")
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT could not build a plan from {onnx_path}; see {log_path}")
        _write_atomically(plan_path, memoryview(serialized))
        # The builder adds its timings to the cache it was given; save them for next time.
        _write_atomically(
            timing_cache, memoryview((config.get_timing_cache() or cache).serialize())
        )
    cudart = cuda_runtime()
    device = describe_device(check_cuda(cudart.cudaGetDevice(), "cudaGetDevice"))
    return PlanBuild(
        plan=plan_path,
        tensorrt_version=str(trt.__version__),
        device=device,
        precision="int8" if int8 else "fp16" if fp16 else "fp32",
        build_seconds=time.monotonic() - started,
        log=log_path,
    )


def _check_int8_graph(onnx_path: Path, model: onnx.ModelProto) -> None:
    if not any(node.op_type == "QuantizeLinear" for node in model.graph.node):
        raise ValueError(
            f"int8 needs a Q/DQ graph (TensorRT's explicit quantization, no calibrator), "
            f"and {onnx_path} has no QuantizeLinear node"
        )
    problems = qdq_problems(model)
    if problems:
        shown = "; ".join(problems[:3]) + (
            f"; and {len(problems) - 3} more" if problems[3:] else ""
        )
        raise ValueError(
            f"TensorRT cannot take the Q/DQ nodes of {onnx_path}: {shown}. It quantizes "
            "symmetrically to signed INT8 and keeps biases in float: quantize with "
            "activation_type=QuantType.QInt8 and extra_options={'ActivationSymmetric': True, "
            "'WeightSymmetric': True, 'QuantizeBias': False}"
        )


def _batch_profile(
    builder: Any, network: Any, min_batch: int, opt_batch: int, max_batch: int
) -> Any:
    if network.num_inputs != 1:
        raise RuntimeError(f"the model must have one input, it has {network.num_inputs}")
    waveform = network.get_input(0)
    shape = [int(dim) for dim in waveform.shape]
    if len(shape) != 2 or shape[1] < 1:
        raise RuntimeError(f"input {waveform.name} must be [batch, window_samples], is {shape}")
    window = shape[1]
    profile = builder.create_optimization_profile()
    profile.set_shape(waveform.name, (min_batch, window), (opt_batch, window), (max_batch, window))
    return profile


def _pin_fp32(
    trt: ModuleType,
    network: Any,
    fp32_layers: Sequence[str],
    node_names: Sequence[str],
    log_path: Path,
) -> list[str]:
    """Sets precision and output types to FP32 on every layer made from `fp32_layers`.

    Returns the nodes of `fp32_layers` no layer was found for.
    """
    wanted = set(fp32_layers)
    floats = (trt.float32, trt.float16)
    pinned: set[str] = set()
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        nodes = onnx_nodes_of_layer(
            layer.name, str(getattr(layer, "metadata", "") or ""), node_names
        )
        if not nodes & wanted:
            continue
        float_outputs = [i for i in range(layer.num_outputs) if layer.get_output(i).dtype in floats]
        if not float_outputs:
            continue  # shape and index helpers carry no values that could overflow
        layer.precision = trt.float32
        for output in float_outputs:
            layer.set_output_type(output, trt.float32)
        pinned |= nodes & wanted
    if not pinned:
        raise RuntimeError(
            f"none of the {len(wanted)} FP32 nodes (e.g. {fp32_layers[0]}) matches a layer of "
            f"the parsed network, so the front end would not be kept in FP32 (log: {log_path})"
        )
    return [name for name in fp32_layers if name not in pinned]


def _attach_timing_cache(config: Any, path: Path, progress: Callable[[str], None]) -> Any:
    data = path.read_bytes() if path.is_file() else b""
    try:
        cache = config.create_timing_cache(data)
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return cache
    except Exception as error:  # a truncated or foreign file: start afresh
        progress(f"timing cache {path} unreadable ({error}); starting a new one")
    else:
        if data:
            progress(f"timing cache {path} is from another TensorRT or GPU; starting a new one")
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _build_logger(trt: ModuleType, log_file: IO[str], progress: Callable[[str], None]) -> Any:
    lock = threading.Lock()  # TensorRT may log from its own threads

    class _BuildLogger(trt.ILogger):  # type: ignore[name-defined,misc]  # TensorRT is untyped
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, message: str) -> None:
            level = int(severity)
            name = _SEVERITY_NAMES.get(level, str(level))
            with lock:
                log_file.write(f"[{name}] {message}\n")
            if level <= _WARNING:
                progress(f"TensorRT {name}: {message}")

    return _BuildLogger()


def _write_atomically(path: Path, data: memoryview) -> None:
    """Writes `data` to a temporary file beside `path`, then renames it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
