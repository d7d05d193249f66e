"""The native TensorRT engine: a model.plan on one GPU, with one CUDA stream per context.

This code has not run on this project's CI machines: they have no GPU, and TensorRT and
cuda-python are not installed there, so only `unavailable_reason` and `plan_mismatch` run
in CI (they answer "not here"). `optimize/gpu_check.sh` exercises the engine on a machine
with an NVIDIA GPU, TensorRT 10 and cuda-python: it builds a plan, loads it here, and
compares its scores with ONNX Runtime's.

TensorRT and the CUDA bindings are imported inside the functions that need them, so a
server without them pays nothing. The API used is TensorRT 10's name-based one
(`set_input_shape`, `set_tensor_address`, `execute_async_v3`); CUDA memory and streams
come from cuda-python's runtime bindings, never from torch or pycuda.
"""

from __future__ import annotations

import collections
import ctypes
import importlib
import importlib.util
import logging
import math
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from mozart_server.engines.artifacts import TENSORRT, Artifact
from mozart_server.engines.base import EngineOutputs
from mozart_server.errors import ModelLoadError
from mozart_server.settings import TensorRTSettings
from mozart_server.tensors import FloatArray, TensorSpec

logger = logging.getLogger(__name__)

#: Artifact.device keys a plan's build records (mozart_optimize.tensorrt_plan) and a
#: server compares with its own GPU, in the order they are compared.
DEVICE_KEYS = ("compute_capability", "name")
OUTPUT_NAMES = ("probabilities", "logits", "embedding")
#: How long close() waits for batches still running before it frees their memory.
CLOSE_WAIT_S = 10.0
# TensorRT's ILogger severities, by value (INTERNAL_ERROR=0 ... VERBOSE=4).
_LOG_LEVELS = {0: logging.ERROR, 1: logging.ERROR, 2: logging.WARNING, 3: logging.DEBUG}
_SEVERITY_NAMES = {0: "INTERNAL_ERROR", 1: "ERROR", 2: "WARNING", 3: "INFO", 4: "VERBOSE"}


class CudaError(RuntimeError):
    """A CUDA runtime call returned an error code."""


def cuda_runtime() -> ModuleType:
    """cuda-python's runtime bindings: `cuda.bindings.runtime` (12.6.1+), else `cuda.cudart`.

    Raises:
        ImportError: cuda-python is not installed.
    """
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        # cuda-python before 12.6.1 has only the old name, which 13.0 removed.
        return importlib.import_module("cuda.cudart")


def check_cuda(result: tuple[Any, ...], call: str) -> Any:
    """The value of a cuda-python call that returns (error, *values), or CudaError.

    Returns None when the call returns no value, the value itself when it returns one.
    """
    error, *values = result
    code = int(getattr(error, "value", error))
    if code != 0:
        raise CudaError(f"{call} failed: {getattr(error, 'name', error)} ({code})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def native_handle(cuda_object: Any) -> int:
    """The address of a cuda-python object (e.g. a stream) as an int, for TensorRT calls."""
    try:
        utils = importlib.import_module("cuda.bindings.utils")
        return int(utils.get_cuda_native_handle(cuda_object))
    except (ImportError, AttributeError, TypeError):
        # Before cuda-bindings 12.9 int() was the way; 13.0 deprecates it.
        return int(cuda_object)


def describe_device(index: int) -> dict[str, str]:
    """A CUDA device as a plan's record keeps it: its name and compute capability.

    Raises:
        ImportError: cuda-python is not installed.
        CudaError: the device cannot be queried (no driver, index out of range).
    """
    cudart = cuda_runtime()
    properties = check_cuda(cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = properties.name
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode(errors="replace")
    return {
        "compute_capability": f"{properties.major}.{properties.minor}",
        "name": str(name).strip(),
    }


def plan_mismatch(
    artifact: Artifact, tensorrt_version: str, device: Mapping[str, str]
) -> str | None:
    """Why a plan cannot run with this TensorRT on this GPU, from its record; None if it can.

    A plan runs only on the TensorRT version that built it and on the GPU model it was
    built for (TensorRT tunes its kernels to that one); its recorded speed holds there too.
    """
    built_with = artifact.tools.get(TENSORRT)
    if not built_with:
        return (
            "model.json does not record the TensorRT version that built the plan (tools.tensorrt)"
        )
    if built_with != tensorrt_version:
        return (
            f"the plan was built with TensorRT {built_with} and this machine has TensorRT "
            f"{tensorrt_version}; a plan runs only on the version that built it "
            "(rebuild it here with mozart optimize)"
        )
    for key in DEVICE_KEYS:
        recorded = artifact.device.get(key)
        if not recorded:
            return f"model.json does not record the plan's GPU {key} (device.{key})"
        if recorded != device.get(key):
            return (
                f"the plan was built for a GPU with {key} {recorded}, this one has "
                f"{device.get(key)} (rebuild it here with mozart optimize)"
            )
    return None


def unavailable_reason(artifact: Artifact, settings: TensorRTSettings) -> str | None:
    """Why this machine cannot run the plan, or None when it can. Cheap; never raises."""
    try:
        return _unavailable_reason(artifact, settings.cuda_device)
    except Exception as error:  # an odd install is a reason, never a crash of the choice
        return f"probing TensorRT and CUDA failed: {type(error).__name__}: {error}"


def _unavailable_reason(artifact: Artifact, index: int) -> str | None:
    problem = runtime_problem(index)
    if problem is not None:
        return problem
    version = str(importlib.import_module("tensorrt").__version__)
    return plan_mismatch(artifact, version, describe_device(index))


def runtime_problem(index: int) -> str | None:
    """Why TensorRT cannot run on CUDA device `index` here, whatever the plan; None if it can.

    Cheap after the first call (imports and a device count). An odd install may still
    raise from a plain import or CUDA query: callers that must not raise catch it.
    """
    if importlib.util.find_spec("tensorrt") is None:
        return (
            "TensorRT is not installed here (the server's optional extra "
            "mozart-server[tensorrt], on a machine with an NVIDIA GPU and driver)"
        )
    try:
        importlib.import_module("tensorrt")
    except Exception as error:  # a broken install raises anything, e.g. OSError for a .so
        return f"TensorRT is installed but cannot be imported: {error}"
    try:
        cudart = cuda_runtime()
    except ImportError:
        return "TensorRT is installed but the CUDA bindings are not (pip install cuda-python)"
    return _device_problem(cudart, index)


def _device_problem(cudart: ModuleType, index: int) -> str | None:
    try:
        count = check_cuda(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    except CudaError as error:
        return f"TensorRT is installed but no CUDA device is usable here: {error}"
    if count == 0:
        return "TensorRT is installed but this machine has no CUDA device"
    if index >= count:
        return f"cuda_device is {index} but this machine has {count} CUDA device(s)"
    return None


def _python_logger(trt: ModuleType) -> Any:
    """A TensorRT ILogger that writes to this module's log and keeps the last errors."""

    class _Logger(trt.ILogger):  # type: ignore[name-defined,misc]  # TensorRT is untyped
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: collections.deque[str] = collections.deque(maxlen=5)

        def log(self, severity: Any, message: str) -> None:
            level = int(severity)
            if level <= 1:
                self.errors.append(message)
            if level in _LOG_LEVELS:
                logger.log(
                    _LOG_LEVELS[level],
                    "tensorrt",
                    extra={
                        "tensorrt_severity": _SEVERITY_NAMES[level],
                        "tensorrt_message": message,
                    },
                )

    return _Logger()


@dataclass
class _Slot:
    """One execution context with its stream and the buffers it owns, sized for max batch."""

    context: Any
    stream: Any = None
    stream_handle: int = 0
    device_pointers: dict[str, int] = field(default_factory=dict)
    host_pointers: dict[str, int] = field(default_factory=dict)
    host: dict[str, npt.NDArray[Any]] = field(default_factory=dict)


class TensorRTEngine:
    """Runs a TensorRT plan with `tensorrt_instances` execution contexts, one batch each."""

    kind = TENSORRT
    device = "gpu"
    # A plan is one fused graph: it cannot be cut at its log-mel output.
    split = False
    split_note = "a TensorRT plan is not split: the full graph runs per window"

    def __init__(self, plan: Path, settings: TensorRTSettings, artifact: Artifact) -> None:
        """Deserializes the plan and makes the contexts, streams and buffers.

        Raises:
            ModelLoadError: this machine cannot run the plan, TensorRT cannot deserialize
                it, its inputs and outputs are not the model contract's, or the GPU has
                not enough memory for the contexts.
        """
        reason = unavailable_reason(artifact, settings)
        if reason is not None:
            raise ModelLoadError(f"cannot serve {plan} with TensorRT: {reason}")
        self.artifact = artifact
        self._trt = importlib.import_module("tensorrt")
        self._cudart = cuda_runtime()
        self._cuda_device = settings.cuda_device
        self._slots: list[_Slot] = []
        self._free: queue.SimpleQueue[_Slot | None] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._runtime: Any = None
        self._engine: Any = None
        try:
            check_cuda(self._cudart.cudaSetDevice(self._cuda_device), "cudaSetDevice")
            # The logger must outlive every object made through the runtime (TensorRT's rule).
            self._logger = _python_logger(self._trt)
            self._runtime = self._trt.Runtime(self._logger)
            self._engine = self._deserialize(plan)
            self._read_io(plan)
            for _ in range(settings.tensorrt_instances):
                self._add_slot()
        except CudaError as error:
            self._release(self._slots)
            raise ModelLoadError(f"cannot serve {plan} with TensorRT: {error}") from error
        except BaseException:
            self._release(self._slots)
            raise
        for slot in self._slots:
            self._free.put(slot)
        logger.info(
            "tensorrt engine loaded",
            extra={
                "plan": str(plan),
                "tensorrt_version": str(self._trt.__version__),
                "cuda_device": self._cuda_device,
                "contexts": len(self._slots),
                "max_batch": self._max_batch,
            },
        )

    def _deserialize(self, plan: Path) -> Any:
        try:
            data = plan.read_bytes()
        except OSError as error:
            raise ModelLoadError(f"cannot read {plan}: {error}") from error
        try:
            engine = self._runtime.deserialize_cuda_engine(data)
        except Exception as error:  # TensorRT raises its own unexported types
            engine = None
            self._logger.errors.append(str(error))
        if engine is None:
            said = "; ".join(self._logger.errors) or "no message"
            raise ModelLoadError(
                f"TensorRT {self._trt.__version__} cannot deserialize {plan} (recorded as built "
                f"with TensorRT {self.artifact.tools.get(TENSORRT)} for {self.artifact.device}): "
                f"{said}"
            )
        return engine

    def _read_io(self, plan: Path) -> None:
        trt, engine = self._trt, self._engine
        inputs: list[TensorSpec] = []
        outputs: list[TensorSpec] = []
        self._dtypes: dict[str, np.dtype[Any]] = {}
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            shape = tuple(int(dim) for dim in engine.get_tensor_shape(name))
            self._dtypes[name] = dtype
            spec = TensorSpec(name=name, dtype=dtype.name, shape=shape)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                inputs.append(spec)
            else:
                outputs.append(spec)
        if len(inputs) != 1 or len(inputs[0].shape) != 2 or inputs[0].shape[1] < 1:
            raise ModelLoadError(
                f"{plan} must take one input [batch, window_samples], it takes "
                f"{[(spec.name, spec.shape) for spec in inputs]}"
            )
        missing = sorted(set(OUTPUT_NAMES) - {spec.name for spec in outputs})
        if missing:
            raise ModelLoadError(f"{plan} lacks the outputs {missing}")
        self._inputs, self._outputs = inputs, outputs
        self._input_name = inputs[0].name
        self._window_samples = inputs[0].shape[1]
        if engine.num_optimization_profiles < 1:
            raise ModelLoadError(f"{plan} has no optimization profile")
        low, _, high = engine.get_tensor_profile_shape(self._input_name, 0)
        self._min_batch, self._max_batch = int(low[0]), int(high[0])

    def _add_slot(self) -> None:
        cudart = self._cudart
        context = self._engine.create_execution_context()
        if context is None:
            said = "; ".join(self._logger.errors) or "out of GPU memory?"
            raise ModelLoadError(f"TensorRT could not create an execution context: {said}")
        slot = _Slot(context=context)
        self._slots.append(slot)  # first, so a failure below frees what was allocated
        slot.stream = check_cuda(cudart.cudaStreamCreate(), "cudaStreamCreate")
        slot.stream_handle = native_handle(slot.stream)
        if not context.set_input_shape(self._input_name, (self._max_batch, self._window_samples)):
            raise ModelLoadError(f"TensorRT refused the input shape [{self._max_batch}, ...]")
        for name, dtype in self._dtypes.items():
            # Sized once for the profile's largest batch; a smaller one uses the front rows.
            nbytes = math.prod(int(dim) for dim in context.get_tensor_shape(name)) * dtype.itemsize
            device_pointer = int(check_cuda(cudart.cudaMalloc(nbytes), "cudaMalloc"))
            slot.device_pointers[name] = device_pointer
            # Page-locked host memory: copies from pageable memory are not asynchronous.
            host_pointer = int(check_cuda(cudart.cudaMallocHost(nbytes), "cudaMallocHost"))
            slot.host_pointers[name] = host_pointer
            buffer = (ctypes.c_uint8 * nbytes).from_address(host_pointer)
            slot.host[name] = np.frombuffer(memoryview(buffer), dtype=dtype)
            if not context.set_tensor_address(name, device_pointer):
                raise ModelLoadError(f"TensorRT refused the buffer address of {name}")

    @property
    def instances(self) -> int:
        """How many batches can run at the same time (one per execution context)."""
        return len(self._slots)

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        """The plan's inputs, dynamic dimensions as -1."""
        return self._inputs

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        """The plan's outputs, dynamic dimensions as -1."""
        return self._outputs

    @property
    def max_batch(self) -> int:
        """The largest batch the plan's optimization profile takes."""
        return self._max_batch

    def run(self, waveforms: FloatArray) -> EngineOutputs:
        """Runs one batch on a free context (blocks while all are busy).

        Raises:
            ValueError: the batch is not [rows, window_samples] with rows within the
                plan's optimization profile.
            RuntimeError: the engine is closed, or TensorRT or CUDA failed.
        """
        waveforms = np.ascontiguousarray(waveforms, dtype=np.float32)
        if waveforms.ndim != 2 or waveforms.shape[1] != self._window_samples:
            raise ValueError(
                f"the TensorRT plan takes [batch, {self._window_samples}], got {waveforms.shape}"
            )
        rows = waveforms.shape[0]
        if not self._min_batch <= rows <= self._max_batch:
            raise ValueError(
                f"a batch of {rows} is outside the TensorRT plan's optimization profile "
                f"({self._min_batch}..{self._max_batch}); rebuild the plan with mozart optimize "
                "for this max_batch_size"
            )
        if self._closed:
            raise RuntimeError("the TensorRT engine is closed")
        slot = self._free.get()
        if slot is None:
            self._free.put(None)  # wake the next caller waiting too
            raise RuntimeError("the TensorRT engine is closed")
        try:
            return self._run_on(slot, waveforms)
        finally:
            self._free.put(slot)

    def _run_on(self, slot: _Slot, waveforms: FloatArray) -> EngineOutputs:
        cudart = self._cudart
        # The current device is per thread, and batches come from the batcher's threads.
        check_cuda(cudart.cudaSetDevice(self._cuda_device), "cudaSetDevice")
        context, name = slot.context, self._input_name
        if not context.set_input_shape(name, waveforms.shape):
            raise RuntimeError(f"TensorRT refused the input shape {waveforms.shape}")
        slot.host[name][: waveforms.size] = waveforms.reshape(-1)
        nbytes = waveforms.size * self._dtypes[name].itemsize
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        check_cuda(
            cudart.cudaMemcpyAsync(
                slot.device_pointers[name], slot.host_pointers[name], nbytes, to_device,
                slot.stream,
            ),
            "cudaMemcpyAsync",
        )  # fmt: skip
        if not context.execute_async_v3(slot.stream_handle):
            raise RuntimeError("TensorRT could not enqueue the batch (see the tensorrt log)")
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        shapes = {spec.name: tuple(int(d) for d in context.get_tensor_shape(spec.name))
                  for spec in self._outputs}  # fmt: skip
        for output, shape in shapes.items():
            nbytes = math.prod(shape) * self._dtypes[output].itemsize
            check_cuda(
                cudart.cudaMemcpyAsync(
                    slot.host_pointers[output], slot.device_pointers[output], nbytes,
                    to_host, slot.stream,
                ),
                "cudaMemcpyAsync",
            )  # fmt: skip
        check_cuda(cudart.cudaStreamSynchronize(slot.stream), "cudaStreamSynchronize")
        # Copies: the pinned buffers are the context's and the next batch overwrites them.
        results = {
            output: slot.host[output][: math.prod(shape)].reshape(shape).astype(np.float32)
            for output, shape in shapes.items()
            if output in OUTPUT_NAMES
        }
        return EngineOutputs(results["probabilities"], results["logits"], results["embedding"])

    def features(self, waveforms: FloatArray) -> FloatArray:
        """Not split: raises NotImplementedError."""
        raise NotImplementedError(self.split_note)

    def run_features(self, features: FloatArray) -> EngineOutputs:
        """Not split: raises NotImplementedError."""
        raise NotImplementedError(self.split_note)

    def close(self) -> None:
        """Frees the device and pinned memory and the streams, after running batches end."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        returned: list[_Slot] = []
        deadline = time.monotonic() + CLOSE_WAIT_S
        while len(returned) < len(self._slots):
            try:
                slot = self._free.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if slot is not None:
                returned.append(slot)
        self._free.put(None)  # callers still waiting for a context get "closed"
        running = len(self._slots) - len(returned)
        if running:
            logger.warning(
                "tensorrt contexts still running at close; their memory stays allocated",
                extra={"contexts": running},
            )
        self._release(returned, drop_engine=not running)

    def _release(self, slots: Sequence[_Slot], *, drop_engine: bool = True) -> None:
        cudart = self._cudart
        _quietly(lambda: cudart.cudaSetDevice(self._cuda_device), "cudaSetDevice")
        for slot in slots:
            slot.host.clear()  # the arrays view pinned memory about to be freed
            slot.context = None
            for pointer in slot.device_pointers.values():
                _quietly(lambda p=pointer: cudart.cudaFree(p), "cudaFree")
            for pointer in slot.host_pointers.values():
                _quietly(lambda p=pointer: cudart.cudaFreeHost(p), "cudaFreeHost")
            if slot.stream is not None:
                _quietly(lambda s=slot.stream: cudart.cudaStreamDestroy(s), "cudaStreamDestroy")
            slot.device_pointers.clear()
            slot.host_pointers.clear()
            slot.stream = None
        if drop_engine:  # never under a context still running
            # Contexts before the engine, the engine before the runtime (TensorRT's order).
            self._engine = None
            self._runtime = None


def _quietly(call: Any, name: str) -> None:
    """Runs a CUDA release call; a failure is logged, since close() must not raise."""
    try:
        check_cuda(call(), name)
    except Exception as error:  # cuda-python may raise too, e.g. on a torn-down context
        logger.warning("cuda release failed", extra={"cuda_call": name, "error": str(error)})
