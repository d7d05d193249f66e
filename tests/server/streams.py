"""Helpers for StreamClassify tests: build request sequences and run them to the end."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import grpc

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc


def config_message(
    encoding: int = pb.AUDIO_ENCODING_PCM_S16LE,
    rate: int = 16_000,
    channels: int = 1,
    name: str = "tiny",
    version: str = "",
    **fields: Any,
) -> pb.StreamClassifyRequest:
    """The first message of a stream."""
    audio_format = pb.AudioFormat(
        encoding=encoding,  # type: ignore[arg-type]
        sample_rate_hz=rate,
        channels=channels,
    )
    config = pb.StreamConfig(
        model=pb.ModelRef(name=name, version=version), format=audio_format, **fields
    )
    return pb.StreamClassifyRequest(config=config)


def audio_messages(data: bytes, chunk_sizes: Sequence[int]) -> list[pb.StreamClassifyRequest]:
    """Cuts `data` into chunks of the given sizes, cycling through them."""
    messages, offset, i = [], 0, 0
    while offset < len(data):
        size = max(1, chunk_sizes[i % len(chunk_sizes)])
        messages.append(pb.StreamClassifyRequest(audio=data[offset : offset + size]))
        offset, i = offset + size, i + 1
    return messages


def run_stream(
    stub: pb_grpc.AudioClassifierStub, messages: Iterable[pb.StreamClassifyRequest]
) -> tuple[list[pb.StreamClassifyResponse], grpc.RpcError | None]:
    """Sends every message, half-closes, and returns the responses and the error, if any."""
    responses: list[pb.StreamClassifyResponse] = []
    try:
        for response in stub.StreamClassify(iter(list(messages)), timeout=60):
            responses.append(response)
    except grpc.RpcError as error:
        return responses, error
    return responses, None
