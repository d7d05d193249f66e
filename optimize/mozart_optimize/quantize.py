"""Static INT8 quantization in QDQ form, calibrated on real windows (onnxruntime.quantization).

Weights are signed INT8 per output channel; activations are unsigned INT8 with ranges
calibrated (MinMax) on a fixed, seeded sample of training windows. What stays FP32, and
why (figures from ORT's profiler on the default model, batch 16, one thread, this
project's 2-core CI machine):

- the log-mel front end: the power spectrum does not fit INT8 (graph.front_end_nodes);
- the CNN's first convolution: it has one input channel, and as QLinearConv it took
  4.3 ms against 2.1 ms in FP32;
- average pooling: QLinearAveragePool took 5.5 ms against 0.9 ms in FP32.

So the other convolutions and the dense layers run in INT8.

For TensorRT (`for_tensorrt=True`) the graph must be what TensorRT's explicit
quantization takes: symmetric signed INT8 activations (zero point 0) and biases left in
floating point. Only the front end stays FP32 there; the first-convolution and pooling
choices above are ONNX Runtime CPU findings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from mozart_optimize.graph import first_conv_after, front_end_nodes
from mozart_server.tensors import FloatArray

OPS_IN_INT8 = ("Conv", "Gemm", "MatMul")
CALIBRATION_BATCH = 16


@dataclass(frozen=True)
class QuantizationPlan:
    """What is quantized and what is kept in FP32."""

    kept_fp32: tuple[str, ...]
    calibration_windows: int


class _Windows(CalibrationDataReader):  # type: ignore[misc]  # untyped base
    """Feeds the calibration windows in batches and reports how far it got."""

    def __init__(
        self, input_name: str, windows: FloatArray, progress: Callable[[int, int], None]
    ) -> None:
        self._input_name = input_name
        self._windows = windows
        self._next = 0
        self._progress = progress

    def get_next(self) -> dict[str, Any] | None:
        if self._next >= len(self._windows):
            return None
        batch = self._windows[self._next : self._next + CALIBRATION_BATCH]
        self._next += len(batch)
        self._progress(self._next, len(self._windows))
        return {self._input_name: batch}


def quantize_int8(
    source: Path,
    target: Path,
    windows: FloatArray,
    *,
    work_dir: Path,
    for_tensorrt: bool = False,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> QuantizationPlan:
    """Writes the static INT8 QDQ model of `source` to `target`.

    Raises:
        GraphError: the graph has no front end to keep in FP32.
    """
    prepared = work_dir / f"prepared-{target.stem}.onnx"
    # Shape inference and constant folding first, as onnxruntime.quantization recommends.
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    model = onnx.load(str(prepared))
    kept = front_end_nodes(model)
    first_conv = first_conv_after(model, kept)
    if first_conv is not None and not for_tensorrt:
        kept.append(first_conv)
    tensorrt_options = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
    quantize_static(
        str(prepared),
        str(target),
        _Windows(model.graph.input[0].name, windows, progress),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QInt8 if for_tensorrt else QuantType.QUInt8,
        op_types_to_quantize=list(OPS_IN_INT8),
        nodes_to_exclude=kept,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options=tensorrt_options if for_tensorrt else {},
    )
    return QuantizationPlan(kept_fp32=tuple(kept), calibration_windows=len(windows))
