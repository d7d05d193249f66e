"""Open Inference Protocol v2 messages <-> Mozart's models and tensors.

Kept apart from the servicer: this module only reads and builds messages, and
raises InvalidArgumentError for tensors that do not fit the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_proto.inference import model_config_pb2 as v2_config
from mozart_server.engine import EngineOutputs, FloatArray
from mozart_server.errors import InvalidArgumentError
from mozart_server.registry import ServingModel
from mozart_server.settings import ServerSettings, VersionPolicy

INPUT_NAME = "waveform"
OUTPUT_NAMES = ("probabilities", "embedding")
PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"
FP32 = "FP32"
_FLOAT32_LE = np.dtype("<f4")


def _output_width(model: ServingModel, name: str) -> int:
    for spec in model.manifest.outputs:
        if spec.name == name:
            return int(spec.shape[-1])
    raise InvalidArgumentError(f"model {model.name!r} has no output {name!r}")


def model_metadata(versions: Sequence[ServingModel]) -> v2.ModelMetadataResponse:
    """ModelMetadata of a model: its serving versions and tensor signatures (newest last)."""
    newest = versions[-1]
    tensor = v2.ModelMetadataResponse.TensorMetadata
    return v2.ModelMetadataResponse(
        name=newest.name,
        versions=[model.version for model in versions],
        platform=PLATFORM,
        inputs=[tensor(name=INPUT_NAME, datatype=FP32, shape=[-1, newest.manifest.window_samples])],
        outputs=[
            tensor(name=name, datatype=FP32, shape=[-1, _output_width(newest, name)])
            for name in OUTPUT_NAMES
        ],
    )


def model_config(model: ServingModel, settings: ServerSettings) -> v2.ModelConfigResponse:
    """The configuration a version is served with, in Triton's terms.

    As in Triton, `dims` leave out the batch dimension because max_batch_size > 0.
    """
    policy = v2_config.ModelVersionPolicy()
    if settings.version_policy is VersionPolicy.ALL:
        policy.all.SetInParent()
    elif settings.version_policy is VersionPolicy.SPECIFIC:
        policy.specific.versions.extend(int(v) for v in settings.specific_versions if v.isdigit())
    else:
        policy.latest.num_versions = settings.latest_versions
    config = v2_config.ModelConfig(
        name=model.name,
        platform=PLATFORM,
        backend=BACKEND,
        version_policy=policy,
        max_batch_size=settings.max_batch_size,
        default_model_filename="model.onnx",
        input=[
            v2_config.ModelInput(
                name=INPUT_NAME,
                data_type=v2_config.TYPE_FP32,
                dims=[model.manifest.window_samples],
            )
        ],
        output=[
            v2_config.ModelOutput(
                name=name, data_type=v2_config.TYPE_FP32, dims=[_output_width(model, name)]
            )
            for name in OUTPUT_NAMES
        ],
        instance_group=[
            v2_config.ModelInstanceGroup(
                name=f"{model.name}_cpu",
                count=settings.instances,
                kind=v2_config.ModelInstanceGroup.KIND_CPU,
            )
        ],
        dynamic_batching=v2_config.ModelDynamicBatching(
            preferred_batch_size=list(settings.preferred_batch_sizes),
            max_queue_delay_microseconds=settings.max_queue_delay_us,
            default_queue_policy=v2_config.ModelQueuePolicy(
                max_queue_size=settings.max_queue_windows
            ),
        ),
    )
    return v2.ModelConfigResponse(config=config)


def waveforms_from_request(request: v2.ModelInferRequest, model: ServingModel) -> FloatArray:
    """Reads the `waveform` input as float32 [batch, window_samples].

    Raises:
        InvalidArgumentError: a missing, extra, mistyped, misshapen or non-finite input.
    """
    window = model.manifest.window_samples
    if len(request.inputs) != 1 or request.inputs[0].name != INPUT_NAME:
        names = [tensor.name for tensor in request.inputs]
        raise InvalidArgumentError(
            f"model {model.name!r} takes exactly one input {INPUT_NAME!r}, got {names}"
        )
    tensor = request.inputs[0]
    if tensor.datatype != FP32:
        raise InvalidArgumentError(f"input {INPUT_NAME!r} must be FP32, got {tensor.datatype!r}")
    shape = tuple(tensor.shape)
    if len(shape) != 2 or shape[0] < 1 or shape[1] != window:
        raise InvalidArgumentError(
            f"input {INPUT_NAME!r} must have shape [batch, {window}] with batch >= 1, "
            f"got {list(shape)}"
        )
    count = shape[0] * shape[1]
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1 or tensor.HasField("contents"):
            raise InvalidArgumentError(
                "send the input either in raw_input_contents (one entry) or in contents, not both"
            )
        raw = request.raw_input_contents[0]
        if len(raw) != count * _FLOAT32_LE.itemsize:
            raise InvalidArgumentError(
                f"input {INPUT_NAME!r} has {len(raw)} bytes of raw data; shape {list(shape)} "
                f"needs {count * _FLOAT32_LE.itemsize}"
            )
        values = np.frombuffer(raw, dtype=_FLOAT32_LE)
    else:
        typed = tensor.contents.fp32_contents
        if len(typed) != count:
            raise InvalidArgumentError(
                f"input {INPUT_NAME!r} has {len(typed)} fp32_contents values; "
                f"shape {list(shape)} needs {count}"
            )
        values = np.asarray(typed, dtype=np.float32)
    waveforms = values.astype(np.float32).reshape(shape)
    if not np.all(np.isfinite(waveforms)):
        raise InvalidArgumentError(f"input {INPUT_NAME!r} holds NaN or infinite samples")
    return waveforms


def requested_outputs(request: v2.ModelInferRequest) -> tuple[str, ...]:
    """Names of the outputs to return; all of them when the request names none."""
    names = tuple(output.name for output in request.outputs) or OUTPUT_NAMES
    unknown = [name for name in names if name not in OUTPUT_NAMES]
    if unknown:
        raise InvalidArgumentError(
            f"unknown outputs {unknown}; this model has {list(OUTPUT_NAMES)}"
        )
    return names


def infer_response(
    request: v2.ModelInferRequest,
    model: ServingModel,
    outputs: EngineOutputs,
    names: Iterable[str],
) -> v2.ModelInferResponse:
    """Builds the response, always with raw_output_contents (all tritonclient reads)."""
    arrays = {"probabilities": outputs.probabilities, "embedding": outputs.embedding}
    response = v2.ModelInferResponse(
        model_name=model.name, model_version=model.version, id=request.id
    )
    for name in names:
        array = np.ascontiguousarray(arrays[name], dtype=_FLOAT32_LE)
        response.outputs.add(name=name, datatype=FP32, shape=list(array.shape))
        response.raw_output_contents.append(array.tobytes())
    return response
