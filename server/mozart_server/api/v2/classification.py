"""Triton's classification extension: an output's top classes as "value:index[:label]" strings.

A requested output with the parameter `classification` (int64_param, what tritonclient
sets from `class_count`) comes back as a BYTES tensor [batch, count] instead of its
scores: per row, the `count` highest values (fewer when the output is narrower), highest
first, each written the way Triton writes it, with the value as C++'s std::to_string
prints a float ("%f", six decimals), then the class index, then the label when the
output has labels. Equal values keep index order (Triton leaves their order open).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from mozart_server.errors import InvalidArgumentError
from mozart_server.tensors import FloatArray

PARAMETER = "classification"
BYTES = "BYTES"
_LENGTH = struct.Struct("<I")  # BYTES elements travel length-prefixed, uint32 little endian


def class_count(output_name: str, parameter_kind: str | None, value: int) -> int:
    """The count a `classification` parameter asks for; 0 means the scores themselves.

    Args:
        output_name: the requested output, for the message.
        parameter_kind: which InferParameter field is set (None: none is).
        value: its int64_param.

    Raises:
        InvalidArgumentError: the parameter is not an int64_param, or is negative.
    """
    if parameter_kind != "int64_param":
        raise InvalidArgumentError(
            f"output {output_name!r}: parameter {PARAMETER!r} must be an int64_param "
            f"(the number of classes), got {parameter_kind}"
        )
    if value < 0:
        raise InvalidArgumentError(
            f"output {output_name!r}: parameter {PARAMETER!r} must be >= 0, got {value}"
        )
    return value


def top_classes(scores: FloatArray, count: int, labels: Sequence[str] | None) -> list[bytes]:
    """The top `count` classes of each row of `scores` [batch, n], row after row."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :count]
    strings = []
    for row, indices in zip(scores, order, strict=True):
        for index in indices:
            text = f"{float(row[index]):f}:{int(index)}"
            if labels is not None:
                text += f":{labels[index]}"
            strings.append(text.encode())
    return strings


def serialized(strings: Sequence[bytes]) -> bytes:
    """BYTES tensor contents as raw_output_contents carries them (what tritonclient reads)."""
    return b"".join(_LENGTH.pack(len(text)) + text for text in strings)
