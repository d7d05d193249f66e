"""Protobuf messages as plain JSON values, with 64-bit integers as numbers.

`google.protobuf.json_format` writes int64 and uint64 as strings (proto3's JSON
mapping); HTTP clients of Triton's REST protocol and of Mozart's REST read numbers.
"""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

_TYPE = FieldDescriptor


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == _TYPE.TYPE_MESSAGE:
        return message_to_json(value)
    if field.type == _TYPE.TYPE_ENUM:
        enum_value = field.enum_type.values_by_number.get(value)
        return enum_value.name if enum_value is not None else value
    if field.type == _TYPE.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def message_to_json(message: Message, *, defaults: bool = True) -> dict[str, Any]:
    """A message as a dict of its proto field names; `defaults` keeps unset scalars too."""
    out: dict[str, Any] = {}
    fields = message.DESCRIPTOR.fields if defaults else [f for f, _ in message.ListFields()]
    for field in fields:
        value = getattr(message, field.name)
        is_repeated = field.is_repeated
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {key: _value(value_field, item) for key, item in value.items()}
        elif is_repeated:
            out[field.name] = [_value(field, item) for item in value]
        elif field.type == _TYPE.TYPE_MESSAGE:
            if message.HasField(field.name):  # an unset submessage is left out
                out[field.name] = message_to_json(value, defaults=defaults)
        elif field.containing_oneof is not None and not message.HasField(field.name):
            continue
        else:
            out[field.name] = _value(field, value)
    return out
