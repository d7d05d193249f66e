"""StreamClassify's messages as a stream session's source and sink (gRPC only here)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_server.api.interceptors import REQUEST_ID_METADATA
from mozart_server.api.v1 import conversion
from mozart_server.errors import InvalidArgumentError
from mozart_server.inference.results import Summary, WindowScores
from mozart_server.inference.streams import StreamEnd, StreamRequest
from mozart_server.models.manifest import Manifest

if TYPE_CHECKING:
    from mozart_server.api.interceptors import Context

# grpc-stubs does not declare the end-of-stream marker of context.read().
EOF = grpc.aio.EOF  # type: ignore[attr-defined]

END_REASONS = {
    StreamEnd.COMPLETE: pb.STREAM_END_REASON_COMPLETE,
    StreamEnd.DRAINED: pb.STREAM_END_REASON_DRAINED,
}

T = TypeVar("T")
_CLIENT_GONE = "the client cancelled the stream or went away"


async def _on_the_call(operation: Awaitable[T]) -> T:
    """Runs a read or write on the call; one that fails because the call is over is a cancel.

    gRPC fails the operations of a call whose client cancelled or went away
    (`grpc.aio.InternalError`, "ExecuteBatchError"), sometimes before it cancels the
    handler: that is the client leaving, not a server fault.
    """
    try:
        return await operation
    except grpc.aio.InternalError:
        raise asyncio.CancelledError(_CLIENT_GONE) from None


#: Initial metadata of a stream whose StreamConfig the server accepted (model resolved,
#: options and format checked); sent before the first audio message is read.
STREAM_ACCEPTED_METADATA = "x-mozart-stream-accepted"


class GrpcStreamSource:
    """Reads the StreamConfig, then audio messages, from the call.

    Before reading the first audio message it sends the call's initial metadata
    (`x-mozart-stream-accepted: 1`, `x-request-id`): the session asks for audio only
    once the config is accepted, so a client may hold its audio until then. That
    spares asyncio clients a grpcio bug (grpc/grpc#36066): a write in flight when
    the server ends the call can replace the server's status (e.g. NOT_FOUND for an
    unknown model) with INTERNAL "Internal error from Core".
    """

    def __init__(self, context: Context, request_id: str = "") -> None:
        self._context = context
        self._request_id = request_id
        self._accepted = False

    async def config(self) -> StreamRequest:
        """The first message's StreamConfig.

        Raises:
            InvalidArgumentError: the stream ended first, or the first message is audio.
        """
        first: Any = await _on_the_call(self._context.read())
        if first is EOF:
            raise InvalidArgumentError("the stream ended before its StreamConfig")
        if first.WhichOneof("request") != "config":
            raise InvalidArgumentError("the first message must carry only a StreamConfig")
        routing = conversion.routing_key(self._context.invocation_metadata())
        return conversion.stream_request(first.config, routing)

    async def audio(self) -> bytes | None:
        """The next message's audio; None at half-close.

        Raises:
            InvalidArgumentError: a later message carries a second StreamConfig.
        """
        if not self._accepted:
            self._accepted = True
            metadata = ((STREAM_ACCEPTED_METADATA, "1"), (REQUEST_ID_METADATA, self._request_id))
            await _on_the_call(self._context.send_initial_metadata(metadata))
        # The read of every chunk: _on_the_call inlined, one coroutine fewer per message.
        try:
            message: Any = await self._context.read()
        except grpc.aio.InternalError:
            raise asyncio.CancelledError(_CLIENT_GONE) from None
        if message is EOF:
            return None
        if message.WhichOneof("request") != "audio":
            raise InvalidArgumentError("a stream carries one StreamConfig, in its first message")
        return bytes(message.audio)


class GrpcStreamSink:
    """Writes results, notices and the summary to the call, each with the request id.

    The first window or summary also carries the model's labels, the order of every
    score list of the stream.
    """

    def __init__(self, context: Context, request_id: str) -> None:
        self._context = context
        self._request_id = request_id
        self._labels_sent = False

    def _add_labels(self, response: pb.StreamClassifyResponse, manifest: Manifest) -> None:
        if not self._labels_sent:
            self._labels_sent = True
            response.labels.extend(manifest.labels)

    async def window(self, manifest: Manifest, window: WindowScores, top_k: int) -> None:
        """An interim WindowResult."""
        response = pb.StreamClassifyResponse(is_final=False, request_id=self._request_id)
        conversion.fill_window_result(response.window, manifest, window, top_k)
        if not self._labels_sent:
            self._add_labels(response, manifest)
        try:  # _on_the_call inlined, as in GrpcStreamSource.audio
            await self._context.write(response)
        except grpc.aio.InternalError:
            raise asyncio.CancelledError(_CLIENT_GONE) from None

    async def notice(self, code: str, message: str) -> None:
        """An in-band StreamNotice."""
        notice = pb.StreamNotice(code=code, message=message)
        await _on_the_call(
            self._context.write(
                pb.StreamClassifyResponse(notice=notice, request_id=self._request_id)
            )
        )

    async def summary(
        self, manifest: Manifest, summary: Summary, top_k: int, end: StreamEnd
    ) -> None:
        """The final message with the stream's summary and why it ended."""
        response = pb.StreamClassifyResponse(
            is_final=True, request_id=self._request_id, end_reason=END_REASONS[end]
        )
        conversion.fill_summary(response.summary, manifest, summary, top_k)
        self._add_labels(response, manifest)
        await _on_the_call(self._context.write(response))
