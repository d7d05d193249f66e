"""Open Inference Protocol v2 messages <-> Mozart's models and tensors.

Kept apart from the servicer: this module only reads and builds messages, and
raises InvalidArgumentError for tensors that do not fit the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_proto.inference import model_config_pb2 as v2_config
from mozart_server.api.v2 import classification
from mozart_server.audio.decode import checked_floats
from mozart_server.engines import EngineOutputs
from mozart_server.errors import InvalidArgumentError, NotFoundError
from mozart_server.models.control import ModelStatus, VersionState
from mozart_server.models.manifest import MANIFEST_FILE
from mozart_server.models.registry import ServingVersion
from mozart_server.settings import FloatSamples, RepositorySettings, VersionPolicy
from mozart_server.tensors import FloatArray

INPUT_NAME = "waveform"
OUTPUT_NAMES = ("probabilities", "logits", "embedding")
#: Outputs with one value per label; ModelConfig names their label file, as Triton does,
#: and their classification strings carry the labels.
LABELLED_OUTPUTS = frozenset({"probabilities", "logits"})
#: Where a version's labels are: the `labels` list of its model.json (Triton's
#: label_filename names a file in the model's directory, one label per line).
LABEL_FILENAME = MANIFEST_FILE
# Triton's platform and backend names of each engine kind.
PLATFORMS = {
    "onnxruntime": ("onnxruntime_onnx", "onnxruntime"),
    "tensorrt": ("tensorrt_plan", "tensorrt"),
}
FP32 = "FP32"
#: Load and unload parameters that are accepted and ignored (tritonclient always sends
#: unload_dependents; Mozart has no ensembles to unload with a model).
IGNORED_PARAMETERS = frozenset({"unload_dependents"})
_FLOAT32_LE = np.dtype("<f4")


def _output_width(model: ServingVersion, name: str) -> int:
    for spec in model.manifest.outputs:
        if spec.name == name:
            return int(spec.shape[-1])
    raise InvalidArgumentError(f"model {model.name!r} has no output {name!r}")


def model_metadata(versions: Sequence[ServingVersion]) -> v2.ModelMetadataResponse:
    """ModelMetadata of a model: its serving versions and tensor signatures (newest last)."""
    newest = versions[-1]
    tensor = v2.ModelMetadataResponse.TensorMetadata
    return v2.ModelMetadataResponse(
        name=newest.name,
        versions=[model.version for model in versions],
        platform=_platform(newest)[0],
        inputs=[tensor(name=INPUT_NAME, datatype=FP32, shape=[-1, newest.manifest.window_samples])],
        outputs=[
            tensor(name=name, datatype=FP32, shape=[-1, _output_width(newest, name)])
            for name in OUTPUT_NAMES
        ],
    )


def _platform(model: ServingVersion) -> tuple[str, str]:
    kind = model.engine.kind
    return PLATFORMS.get(kind, (kind, kind))


def model_config(model: ServingVersion, settings: RepositorySettings) -> v2.ModelConfigResponse:
    """The configuration a version is served with, in Triton's terms.

    Batching comes from the version's live batcher; the platform, the served file and
    the instances (their count, and CPU or GPU) from its live engine; the version policy
    from the repository settings. As in Triton, `dims` leave out the batch dimension
    because max_batch_size > 0.
    """
    batching = model.batcher.config
    engine = model.engine
    platform, backend = _platform(model)
    on_gpu = engine.device == "gpu"
    policy = v2_config.ModelVersionPolicy()
    if settings.version_policy is VersionPolicy.ALL:
        policy.all.SetInParent()
    elif settings.version_policy is VersionPolicy.SPECIFIC:
        policy.specific.versions.extend(int(v) for v in settings.specific_versions if v.isdigit())
    else:
        policy.latest.num_versions = settings.latest_versions
    config = v2_config.ModelConfig(
        name=model.name,
        platform=platform,
        backend=backend,
        version_policy=policy,
        max_batch_size=batching.max_batch_size,
        default_model_filename=engine.artifact.file,
        input=[
            v2_config.ModelInput(
                name=INPUT_NAME,
                data_type=v2_config.TYPE_FP32,
                dims=[model.manifest.window_samples],
            )
        ],
        output=[
            v2_config.ModelOutput(
                name=name,
                data_type=v2_config.TYPE_FP32,
                dims=[_output_width(model, name)],
                label_filename=LABEL_FILENAME if name in LABELLED_OUTPUTS else "",
            )
            for name in OUTPUT_NAMES
        ],
        instance_group=[
            v2_config.ModelInstanceGroup(
                name=f"{model.name}_{'gpu' if on_gpu else 'cpu'}",
                count=engine.instances,
                kind=(
                    v2_config.ModelInstanceGroup.KIND_GPU
                    if on_gpu
                    else v2_config.ModelInstanceGroup.KIND_CPU
                ),
            )
        ],
        parameters={
            "precision": v2_config.ModelParameter(string_value=engine.artifact.precision),
            "artifact": v2_config.ModelParameter(string_value=engine.artifact.file),
            # The label file's contents, which the protocol has no call to read.
            "labels": v2_config.ModelParameter(string_value=json.dumps(model.manifest.labels)),
        },
        dynamic_batching=v2_config.ModelDynamicBatching(
            preferred_batch_size=list(batching.preferred_batch_sizes),
            max_queue_delay_microseconds=batching.max_queue_delay_us,
            default_queue_policy=v2_config.ModelQueuePolicy(
                max_queue_size=batching.max_queue_windows
            ),
        ),
    )
    return v2.ModelConfigResponse(config=config)


def waveforms_from_request(
    request: v2.ModelInferRequest, model: ServingVersion, float_samples: FloatSamples
) -> FloatArray:
    """Reads the `waveform` input as float32 [batch, window_samples].

    Samples follow the same rule as float audio everywhere (`float_samples`): NaN and
    infinity are refused, and samples beyond +-8 are refused or every sample is clipped.

    Raises:
        InvalidArgumentError: a missing, extra, mistyped or misshapen input, more rows
            than the batcher's max_batch_size (checked before the data is read), or
            samples that are non-finite or (float_samples=reject) out of range.
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
    limit = model.batcher.config.max_batch_size
    if shape[0] > limit:
        raise InvalidArgumentError(
            f"inference request batch-size must be <= {limit} for {model.name!r} "
            f"(max_batch_size in its ModelConfig); input {INPUT_NAME!r} has {shape[0]} rows, "
            "send them in several requests"
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
    # One copy: of the raw bytes (a read-only view), none more of the fp32_contents array.
    waveforms = values.astype(np.float32, copy=not request.raw_input_contents).reshape(shape)
    return checked_floats(waveforms, float_samples, f"input {INPUT_NAME!r}")


@dataclass(frozen=True)
class RequestedOutput:
    """One output to return: its scores, or (class_count > 0) its top classes as strings."""

    name: str
    class_count: int = 0


def requested_outputs(request: v2.ModelInferRequest) -> tuple[RequestedOutput, ...]:
    """The outputs to return; all of them, as scores, when the request names none.

    Raises:
        InvalidArgumentError: an unknown output, or a malformed `classification` parameter.
    """
    if not request.outputs:
        return tuple(RequestedOutput(name) for name in OUTPUT_NAMES)
    unknown = [output.name for output in request.outputs if output.name not in OUTPUT_NAMES]
    if unknown:
        raise InvalidArgumentError(
            f"unknown outputs {unknown}; this model has {list(OUTPUT_NAMES)}"
        )
    names = [output.name for output in request.outputs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InvalidArgumentError(f"outputs {twice} are requested more than once")
    requested = []
    for output in request.outputs:
        count = 0
        if classification.PARAMETER in output.parameters:
            parameter = output.parameters[classification.PARAMETER]
            count = classification.class_count(
                output.name, parameter.WhichOneof("parameter_choice"), parameter.int64_param
            )
        requested.append(RequestedOutput(output.name, count))
    return tuple(requested)


def infer_response(
    request: v2.ModelInferRequest,
    model: ServingVersion,
    outputs: EngineOutputs,
    requested: Iterable[RequestedOutput],
) -> v2.ModelInferResponse:
    """Builds the response, always with raw_output_contents (all tritonclient reads)."""
    arrays = {
        "probabilities": outputs.probabilities,
        "logits": outputs.logits,
        "embedding": outputs.embedding,
    }
    response = v2.ModelInferResponse(
        model_name=model.name, model_version=model.version, id=request.id
    )
    for output in requested:
        array = np.ascontiguousarray(arrays[output.name], dtype=_FLOAT32_LE)
        if output.class_count:
            count = min(output.class_count, int(array.shape[1]))
            labels = model.manifest.labels if output.name in LABELLED_OUTPUTS else None
            strings = classification.top_classes(array, count, labels)
            response.outputs.add(
                name=output.name, datatype=classification.BYTES, shape=[array.shape[0], count]
            )
            response.raw_output_contents.append(classification.serialized(strings))
            continue
        response.outputs.add(name=output.name, datatype=FP32, shape=list(array.shape))
        response.raw_output_contents.append(array.tobytes())
    return response


def check_repository(repository_name: str) -> None:
    """Mozart serves one repository, named "".

    Raises:
        NotFoundError: any other repository name.
    """
    if repository_name:
        raise NotFoundError(
            f'unknown repository {repository_name!r}; this server has one, named ""'
        )


def check_parameters(parameters: Iterable[str]) -> None:
    """Load and unload take no parameters (beyond the ignored ones).

    Raises:
        InvalidArgumentError: naming the parameters that are not supported.
    """
    unsupported = sorted(set(parameters) - IGNORED_PARAMETERS)
    if unsupported:
        raise InvalidArgumentError(
            f"model load/unload parameters {unsupported} are not supported; Mozart loads "
            "what the model repository holds (no config override or uploaded files)"
        )


def repository_index(
    statuses: Sequence[ModelStatus], ready_only: bool
) -> v2.RepositoryIndexResponse:
    """One index entry per known version; a model with none gets one entry without a version."""
    response = v2.RepositoryIndexResponse()
    for status in statuses:
        entries = [entry for entry in status.versions
                   if not ready_only or entry.state is VersionState.READY]  # fmt: skip
        for entry in entries:
            response.models.add(
                name=status.name, version=entry.version, state=entry.state.value,
                reason=entry.reason,
            )  # fmt: skip
        if not status.versions and not ready_only:
            response.models.add(
                name=status.name, state=VersionState.UNAVAILABLE.value, reason="not loaded"
            )
    return response
