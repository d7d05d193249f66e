"""The Open Inference Protocol's REST bodies <-> its gRPC messages.

An infer request's JSON (and binary tensors, Triton's binary tensor data extension:
`Inference-Header-Content-Length` bytes of JSON, then the tensors' bytes in input order)
becomes a `ModelInferRequest`, so the v2 gRPC conversion checks and reads it; the
`ModelInferResponse` becomes JSON, with each output in binary when asked for.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_server.errors import InvalidArgumentError

HEADER_LENGTH = "inference-header-content-length"
BINARY_DATA = "binary_data"
BINARY_DATA_SIZE = "binary_data_size"
BINARY_DATA_OUTPUT = "binary_data_output"
#: Triton's request parameter for the time a request may take, in microseconds.
TIMEOUT = "timeout"
#: Fixed-size datatypes as little-endian numpy dtypes (BYTES is length-prefixed).
DTYPES: dict[str, str] = {
    "BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}  # fmt: skip
_CONTENTS: dict[str, str] = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents",
    "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents",
}  # fmt: skip


@dataclass(frozen=True)
class InferRequest:
    """A parsed infer request and which outputs are wanted in binary."""

    message: v2.ModelInferRequest
    binary_outputs: frozenset[str]
    binary_default: bool


def _parameter(message: Any, key: str, value: Any) -> None:
    """Sets one InferParameter from a JSON value."""
    target = message[key]
    if isinstance(value, bool):
        target.bool_param = value
    elif isinstance(value, int):
        target.int64_param = value
    elif isinstance(value, float):
        target.double_param = value
    elif isinstance(value, str):
        target.string_param = value
    else:
        raise InvalidArgumentError(f"parameter {key!r} must be a bool, number or string")


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"{what} must be a JSON object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidArgumentError(f"{what} must be a JSON array")
    return value


def _flat(data: Any) -> Iterator[Any]:
    if isinstance(data, list):
        for item in data:
            yield from _flat(item)
    else:
        yield data


def _parameters(target: Any, value: Any, what: str, skip: frozenset[str]) -> None:
    for key, item in _object(value, what).items():
        if key not in skip:
            _parameter(target, str(key), item)


def split_body(body: bytes, header_length: str | None) -> tuple[Any, bytes]:
    """The JSON header of a request body and the binary data after it.

    Raises:
        InvalidArgumentError: a bad Inference-Header-Content-Length or JSON.
    """
    if header_length is None:
        head, binary = body, b""
    else:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise InvalidArgumentError(
                f"Inference-Header-Content-Length {header_length!r} must be a byte count "
                f"within the body of {len(body)} bytes"
            )
        size = int(header_length)
        head, binary = body[:size], body[size:]
    try:
        return json.loads(head), binary
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise InvalidArgumentError(f"the request is not valid JSON: {error}") from None


def infer_request(
    model_name: str, model_version: str, body: bytes, header_length: str | None
) -> InferRequest:
    """Reads an infer request's JSON and binary tensors into a ModelInferRequest.

    Raises:
        InvalidArgumentError: malformed JSON, tensors or binary sizes.
    """
    document, binary = split_body(body, header_length)
    document = _object(document, "the request")
    message = v2.ModelInferRequest(model_name=model_name, model_version=model_version)
    request_id = document.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidArgumentError("id must be a string")
    message.id = request_id
    parameters = _object(document.get("parameters", {}), "parameters")
    binary_default = parameters.get(BINARY_DATA_OUTPUT) is True
    _parameters(message.parameters, parameters, "parameters", frozenset({BINARY_DATA_OUTPUT}))
    _read_inputs(message, _list(document.get("inputs"), "inputs"), binary)
    outputs = _list(document.get("outputs", []), "outputs")
    binary_outputs = _read_outputs(message, outputs, binary_default)
    return InferRequest(message, frozenset(binary_outputs), binary_default)


def _read_inputs(message: v2.ModelInferRequest, inputs: list[Any], binary: bytes) -> None:
    """Adds the inputs, their data from JSON or from the binary data in order."""
    offset = 0
    raw: list[bytes] = []
    for index, item in enumerate(inputs):
        tensor_json = _object(item, f"inputs[{index}]")
        tensor = message.inputs.add()
        name, datatype, shape = (tensor_json.get(k) for k in ("name", "datatype", "shape"))
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise InvalidArgumentError(f"inputs[{index}] needs a string name and datatype")
        shape = _list(shape, f"inputs[{index}].shape")
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise InvalidArgumentError(f"inputs[{index}].shape must hold counts >= 0")
        tensor.name, tensor.datatype = name, datatype
        tensor.shape.extend(shape)
        tensor_parameters = _object(tensor_json.get("parameters", {}), f"{name}.parameters")
        size = tensor_parameters.get(BINARY_DATA_SIZE)
        _parameters(
            tensor.parameters, tensor_parameters, f"{name}.parameters",
            frozenset({BINARY_DATA_SIZE}),
        )  # fmt: skip
        if size is None:
            _json_data(tensor, tensor_json.get("data"), name, datatype)
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgumentError(f"input {name!r}: binary_data_size must be >= 0")
        if offset + size > len(binary):
            raise InvalidArgumentError(
                f"input {name!r}: binary_data_size {size} runs past the "
                f"{len(binary)} bytes of binary data"
            )
        raw.append(binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise InvalidArgumentError(
            f"the body has {len(binary) - offset} bytes of binary data that no input claims"
        )
    if raw:
        if len(raw) != len(inputs):
            raise InvalidArgumentError("send every input in binary, or every input as JSON")
        message.raw_input_contents.extend(raw)


def _read_outputs(
    message: v2.ModelInferRequest, outputs: list[Any], binary_default: bool
) -> set[str]:
    """Adds the requested outputs; returns the names of those wanted in binary."""
    binary_outputs = set()
    for index, item in enumerate(outputs):
        output_json = _object(item, f"outputs[{index}]")
        name = output_json.get("name")
        if not isinstance(name, str):
            raise InvalidArgumentError(f"outputs[{index}] needs a string name")
        output = message.outputs.add(name=name)
        output_parameters = _object(output_json.get("parameters", {}), f"{name}.parameters")
        if output_parameters.get(BINARY_DATA, binary_default) is True:
            binary_outputs.add(name)
        _parameters(
            output.parameters, output_parameters, f"{name}.parameters", frozenset({BINARY_DATA})
        )
    return binary_outputs


def _json_data(tensor: Any, data: Any, name: str, datatype: str) -> None:
    if data is None:
        raise InvalidArgumentError(f"input {name!r} has neither data nor binary_data_size")
    values = list(_flat(data))
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in values):
            raise InvalidArgumentError(f"input {name!r}: BYTES data must be strings")
        tensor.contents.bytes_contents.extend(v.encode() for v in values)
        return
    field = _CONTENTS.get(datatype)
    if field is None:
        return  # e.g. FP16: no typed contents; the model's checks name the datatype
    if not all(isinstance(v, (int, float)) for v in values):
        raise InvalidArgumentError(f"input {name!r}: {datatype} data must be numbers")
    if not datatype.startswith(("FP", "BOOL")) and not all(
        isinstance(v, int) or (isinstance(v, float) and v.is_integer()) for v in values
    ):
        raise InvalidArgumentError(f"input {name!r}: {datatype} data must be integers")
    if datatype == "FP32" and any(isinstance(v, float) and not math.isfinite(v) for v in values):
        raise InvalidArgumentError(f"input {name!r} contains NaN or infinite samples")
    convert: Callable[[Any], Any] = (
        bool if datatype == "BOOL" else float if datatype.startswith("FP") else int
    )
    try:
        getattr(tensor.contents, field).extend(convert(v) for v in values)
    except (ValueError, OverflowError, TypeError) as error:
        raise InvalidArgumentError(f"input {name!r}: {error}") from None


def deadline(message: v2.ModelInferRequest) -> float | None:
    """The request's deadline on the monotonic clock, from its `timeout` (microseconds).

    Raises:
        InvalidArgumentError: a timeout that is not a whole number of microseconds > 0.
    """
    if TIMEOUT not in message.parameters:
        return None
    parameter = message.parameters[TIMEOUT]
    if parameter.WhichOneof("parameter_choice") != "int64_param" or parameter.int64_param <= 0:
        raise InvalidArgumentError("the timeout parameter is a whole number of microseconds > 0")
    return time.monotonic() + parameter.int64_param / 1e6


def _as_list(raw: bytes, datatype: str) -> list[Any]:
    if datatype == "BYTES":
        values: list[Any] = []
        offset = 0
        while offset + 4 <= len(raw):
            size = int.from_bytes(raw[offset : offset + 4], "little")
            values.append(raw[offset + 4 : offset + 4 + size].decode("utf-8", "replace"))
            offset += 4 + size
        return values
    return list(np.frombuffer(raw, dtype=DTYPES[datatype]).tolist())


def infer_response(
    response: v2.ModelInferResponse, request: InferRequest
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary data follows it."""
    outputs = []
    binary: list[bytes] = []
    for index, output in enumerate(response.outputs):
        raw = response.raw_output_contents[index]
        entry: dict[str, Any] = {
            "name": output.name, "datatype": output.datatype, "shape": list(output.shape),
        }  # fmt: skip
        wanted = output.name in request.binary_outputs or (
            request.binary_default and not request.message.outputs
        )
        if wanted:
            entry["parameters"] = {BINARY_DATA_SIZE: len(raw)}
            binary.append(raw)
        else:
            entry["data"] = _as_list(raw, output.datatype)
        outputs.append(entry)
    document: dict[str, Any] = {
        "model_name": response.model_name, "model_version": response.model_version,
        "outputs": outputs,
    }  # fmt: skip
    if response.id:
        document["id"] = response.id
    head = json.dumps(document, separators=(",", ":")).encode()
    if not binary:
        return head, None
    return head + b"".join(binary), len(head)
