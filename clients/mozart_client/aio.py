"""The asyncio SDK client: sends what `_calls` prepares and awaits the answers.

It differs from `Client` only in how it waits: the same checks run at the same
moment (when a method is called), the same requests go out, and errors are the
same MozartError subclasses with the same request ids.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2_grpc

from mozart_client._calls import CallCore, UnaryCall, clip_from_stream
from mozart_client._resample import ChunkResampler, aresampled, check_resamplable
from mozart_client._streaming import Pacer, SendLog, StreamOptions, StreamReceiver, stream_options
from mozart_client.audio import (
    AudioArray,
    AudioChunk,
    AudioInput,
    StreamInput,
    bytes_per_second,
    check_channels,
    chunk_of,
    encoding_from_name,
    format_of_first_chunk,
    pcm_format,
    stream_audio,
)
from mozart_client.connection import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_TARGET,
    ConnectionOptions,
    RetryPolicy,
    TlsConfig,
    new_request_id,
    open_aio_channel,
)
from mozart_client.errors import InvalidInputError, from_rpc_error
from mozart_client.results import (
    ClassifyResult,
    HealthStatus,
    ModelInfo,
    ModelStatus,
    RolloutStatus,
    StreamResult,
)
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc

R = TypeVar("R")

#: Initial metadata a server sends once it accepted a stream's StreamConfig.
STREAM_ACCEPTED_METADATA = "x-mozart-stream-accepted"
#: How long a stream waits for that before sending audio anyway (a server older than
#: the handshake sends its initial metadata only with its first result).
ACCEPT_WAIT_S = 2.0

AsyncStreamInput = StreamInput | AsyncIterable[bytes] | AsyncIterable[AudioArray]
"""What `AsyncClient.stream()` accepts: anything `Client.stream()` does, or async chunks."""


class AsyncClient:
    """A connection to a Mozart server, for asyncio code.

    Example:
        >>> async with AsyncClient("localhost:8001") as client:
        ...     async for result in client.stream("song.wav", realtime=True):
        ...         print(result)
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        tls: TlsConfig | None = None,
        token: str | None = None,
        timeout_s: float | None = 10.0,
        retry: RetryPolicy | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        """Opens a channel (lazily); takes the same arguments as `Client`."""
        self.options = ConnectionOptions(
            target=target,
            tls=tls,
            token=token,
            timeout_s=timeout_s,
            retry=retry or RetryPolicy(),
            max_message_bytes=max_message_bytes,
        )
        self._core = CallCore(self.options)
        self._channel = open_aio_channel(self.options)
        # The generated stubs work over both sync and asyncio channels.
        self._classifier = pb_grpc.AudioClassifierStub(self._channel)  # type: ignore[no-untyped-call]
        self._stubs: dict[str, Any] = {
            "classifier": self._classifier,
            "health": health_pb2_grpc.HealthStub(self._channel),
        }

    async def _send(self, call: UnaryCall[R]) -> R:
        """Sends one prepared unary call: the only place unary errors are converted."""
        method = getattr(self._stubs[call.service], call.method)
        try:
            response = await method(call.request, timeout=call.timeout_s, metadata=call.metadata)
        except grpc.RpcError as error:
            raise from_rpc_error(error, call.request_id) from None
        return call.parse(response)

    async def _model_name(self, model: str) -> str:
        return self._core.known_model(model) or self._core.only_model(await self.models())

    async def classify(
        self,
        audio: AudioInput,
        *,
        model: str = "",
        version: str = "",
        sample_rate_hz: int | None = None,
        encoding: str | None = None,
        channels: int | None = None,
        hop_ms: int = 0,
        top_k: int = 0,
        include_embedding: bool = False,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> ClassifyResult:
        """Classifies a whole clip; arguments as in `Client.classify`."""
        wire = self._core.classify_audio(
            audio,
            sample_rate_hz=sample_rate_hz,
            encoding=encoding,
            channels=channels,
            hop_ms=hop_ms,
            top_k=top_k,
        )
        call = self._core.classify(
            wire,
            model=await self._model_name(model),
            version=version,
            hop_ms=hop_ms,
            top_k=top_k,
            include_embedding=include_embedding,
            timeout_s=timeout_s,
            request_id=request_id,
        )
        return await self._send(call)

    def stream(
        self,
        source: AsyncStreamInput,
        *,
        model: str = "",
        version: str = "",
        realtime: bool = False,
        hop_ms: int = 0,
        top_k: int = 0,
        smoothing: float = 0.0,
        sample_rate_hz: int | None = None,
        encoding: str | None = None,
        channels: int | None = None,
        chunk_ms: int = 100,
        include_embedding: bool = False,
        resample_on_client: bool = False,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> AsyncIterator[StreamResult]:
        """Streams audio and yields results as they arrive; arguments as in `Client.stream`.

        Not a coroutine: like `Client.stream`, it checks the input and the options
        when called (InvalidInputError before anything is sent), and returns the
        async iterator of results. Also accepts async iterables of byte or numpy
        chunks, whose first chunk is read, and checked, when iteration starts.
        Breaking out of the `async for` cancels the stream on the server.
        """
        options = stream_options(
            self.options,
            model=model,
            version=version,
            hop_ms=hop_ms,
            top_k=top_k,
            smoothing=smoothing,
            include_embedding=include_embedding,
            realtime=realtime,
            resample_on_client=resample_on_client,
            timeout_s=timeout_s,
            request_id=request_id,
        )
        if isinstance(source, AsyncIterable):
            check_channels(channels)
            if encoding is not None:
                declared = pcm_format(encoding_from_name(encoding), sample_rate_hz, channels or 1)
                if resample_on_client:
                    check_resamplable(declared)
            first = _AsyncFirstChunk(
                source, sample_rate_hz=sample_rate_hz, encoding=encoding, channels=channels or 1
            )
            return self._stream(first, options)
        audio = stream_audio(
            source,
            sample_rate_hz=sample_rate_hz,
            encoding=encoding,
            channels=channels,
            chunk_ms=chunk_ms,
        )
        if resample_on_client:
            check_resamplable(audio.format)
        return self._stream(_AsyncFirstChunk.of_sync(audio.format, audio.chunks), options)

    async def _stream(
        self, audio: _AsyncFirstChunk, options: StreamOptions
    ) -> AsyncIterator[StreamResult]:
        """The stream itself, from the first iteration: model lookup, config, audio, results."""
        fmt, chunks = await audio.open()
        if options.resample_on_client:
            check_resamplable(fmt)
        model = await self._model_name(options.model)
        if options.resample_on_client:
            rate = (await self.model(model, options.version)).sample_rate_hz
            resampler = ChunkResampler(fmt, rate)
            fmt, chunks = resampler.format, aresampled(chunks, resampler)
        config = options.config(fmt, model)
        send_log = SendLog()
        accepted: asyncio.Future[Any] | None = None

        async def requests() -> AsyncIterator[pb.StreamClassifyRequest]:
            nonlocal accepted
            yield config
            # Audio waits until the server accepts the config: a write in flight when it
            # refuses (an unknown model, a bad format) would let grpcio replace its status
            # with INTERNAL "Internal error from Core" (grpc/grpc#36066).
            accepted = asyncio.ensure_future(call.initial_metadata())
            done, _ = await asyncio.wait({accepted}, timeout=ACCEPT_WAIT_S)
            if done and STREAM_ACCEPTED_METADATA not in dict(accepted.result()):
                return  # the server ended the call instead: its status is on its way
            pacer = Pacer(options.realtime)
            async for chunk in chunks:
                delay_s = pacer.delay_s(chunk.duration_s)
                if delay_s > 0:
                    await asyncio.sleep(delay_s)
                send_log.record(chunk.duration_s, time.monotonic())
                yield pb.StreamClassifyRequest(audio=chunk.data)

        call = self._classifier.StreamClassify(
            requests(), timeout=options.timeout_s, metadata=options.metadata
        )
        receiver = StreamReceiver(send_log)
        try:
            async for response in call:
                result = receiver.result(response)
                if result is not None:
                    yield result
        except grpc.RpcError as error:
            raise from_rpc_error(error, options.request_id) from None
        finally:
            call.cancel()
            if accepted is not None:
                accepted.cancel()

    async def classify_large(
        self,
        source: AsyncStreamInput,
        *,
        model: str = "",
        version: str = "",
        hop_ms: int = 0,
        top_k: int = 0,
        sample_rate_hz: int | None = None,
        encoding: str | None = None,
        channels: int | None = None,
        chunk_ms: int = 500,
        include_embedding: bool = False,
        resample_on_client: bool = False,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> ClassifyResult:
        """A clip too big for one message, through StreamClassify; as `Client.classify_large`."""
        chosen_id = new_request_id(request_id)
        results = self.stream(
            source,
            model=model,
            version=version,
            hop_ms=hop_ms,
            top_k=top_k,
            sample_rate_hz=sample_rate_hz,
            encoding=encoding,
            channels=channels,
            chunk_ms=chunk_ms,
            include_embedding=include_embedding,
            resample_on_client=resample_on_client,
            timeout_s=timeout_s,
            request_id=chosen_id,
        )
        return clip_from_stream([r async for r in results], model, version, chosen_id)

    async def models(
        self, *, timeout_s: float | None = None, request_id: str | None = None
    ) -> list[ModelInfo]:
        """Lists the models the server has loaded."""
        return await self._send(self._core.models(timeout_s, request_id))

    async def model(
        self,
        name: str,
        version: str = "",
        *,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> ModelInfo:
        """Describes one model; raises NotFoundError when it is not loaded."""
        return await self._send(self._core.model(name, version, timeout_s, request_id))

    async def model_status(
        self, *, timeout_s: float | None = None, request_id: str | None = None
    ) -> list[ModelStatus]:
        """Every model of the repository with each version's state; as `Client.model_status`."""
        return await self._send(self._core.model_status(timeout_s, request_id))

    async def load_model(
        self,
        name: str,
        *,
        reload: bool = False,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> ModelStatus:
        """Loads or updates a model; arguments and errors as in `Client.load_model`."""
        return await self._send(self._core.load_model(name, reload, timeout_s, request_id))

    async def unload_model(
        self, name: str, *, timeout_s: float | None = None, request_id: str | None = None
    ) -> ModelStatus:
        """Unloads every version of a model; arguments and errors as in `Client.unload_model`."""
        return await self._send(self._core.unload_model(name, timeout_s, request_id))

    async def rollout_status(
        self, name: str, *, timeout_s: float | None = None, request_id: str | None = None
    ) -> RolloutStatus:
        """A model's rollout; arguments and errors as in `Client.rollout_status`."""
        return await self._send(self._core.rollout_status(name, timeout_s, request_id))

    async def set_rollout(
        self,
        name: str,
        weights: Mapping[str, int] | None,
        *,
        timeout_s: float | None = None,
        request_id: str | None = None,
        **policy: Any,
    ) -> RolloutStatus:
        """Sets or clears a model's rollout; arguments and errors as in `Client.set_rollout`."""
        return await self._send(
            self._core.set_rollout(name, weights, policy, timeout_s, request_id)
        )

    async def health(
        self, service: str = "", *, timeout_s: float | None = None, request_id: str | None = None
    ) -> HealthStatus:
        """Asks `grpc.health.v1` about a service ("" is the whole server)."""
        return await self._send(self._core.health(service, timeout_s, request_id))

    async def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        await self._channel.close(grace=None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


class _AsyncFirstChunk:
    """A stream's audio for the asyncio client: its format, known now or from its first chunk."""

    def __init__(
        self,
        items: AsyncIterable[bytes] | AsyncIterable[AudioArray] | None,
        *,
        sample_rate_hz: int | None = None,
        encoding: str | None = None,
        channels: int = 1,
    ) -> None:
        self._items = items
        self._rate, self._encoding, self._channels = sample_rate_hz, encoding, channels
        self._ready: tuple[pb.AudioFormat, AsyncIterator[AudioChunk]] | None = None

    @classmethod
    def of_sync(cls, fmt: pb.AudioFormat, chunks: Any) -> _AsyncFirstChunk:
        """Audio whose format is known and whose chunks are read on the loop."""
        audio = cls(None)
        audio._ready = (fmt, _aiter_sync(chunks))
        return audio

    async def open(self) -> tuple[pb.AudioFormat, AsyncIterator[AudioChunk]]:
        """The format and the chunks; reads the first chunk of async input.

        Raises:
            InvalidInputError: the async iterator yields nothing, or a first chunk
                that does not fit the declared format.
        """
        if self._ready is not None:
            return self._ready
        assert self._items is not None
        iterator: AsyncIterator[bytes | AudioArray] = aiter(self._items)
        try:
            first: bytes | AudioArray = await anext(iterator)
        except StopAsyncIteration:
            raise InvalidInputError("the audio iterator yielded nothing") from None
        fmt = format_of_first_chunk(
            first, sample_rate_hz=self._rate, encoding=self._encoding, channels=self._channels
        )
        rate = bytes_per_second(fmt)

        async def chunks() -> AsyncIterator[AudioChunk]:
            yield chunk_of(first, rate)
            async for item in iterator:
                yield chunk_of(item, rate)

        return fmt, chunks()


async def _aiter_sync(chunks: Any) -> AsyncIterator[AudioChunk]:
    # Files are read in small chunks, so reading them on the loop is cheap.
    for chunk in chunks:
        yield chunk
