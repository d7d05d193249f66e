"""The asyncio SDK client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mozart_client.audio import (
    AudioArray,
    AudioChunk,
    AudioInput,
    StreamAudio,
    StreamInput,
    bytes_per_second,
    chunk_of,
    clip_audio,
    format_of_first_chunk,
    stream_audio,
)
from mozart_client.connection import (
    DEFAULT_TARGET,
    ConnectionOptions,
    RetryPolicy,
    TlsConfig,
    open_aio_channel,
)
from mozart_client.conversion import (
    classify_result_from_proto,
    load_model_request,
    model_info_from_proto,
    model_status_from_proto,
    model_statuses_from_proto,
    serving_status_from_proto,
    stream_result_from_proto,
    unload_model_request,
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
from mozart_client.rollout import (
    get_rollout_request,
    rollout_status_from_proto,
    set_rollout_request,
)
from mozart_client.streaming import Pacer, SendLog, config_request
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc

_UNSET: float = -1.0

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
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Opens a channel (lazily); takes the same arguments as `Client`."""
        self.options = ConnectionOptions(
            target=target, tls=tls, token=token, timeout_s=timeout_s, retry=retry or RetryPolicy()
        )
        self._default_model: str | None = None
        self._channel = open_aio_channel(self.options)
        # The generated stubs work over both sync and asyncio channels.
        self._classifier = pb_grpc.AudioClassifierStub(self._channel)  # type: ignore[no-untyped-call]
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def _model_name(self, model: str) -> str:
        """The model to use: the one asked for, else the server's only model."""
        if model:
            return model
        if self._default_model is None:
            names = [info.name for info in await self.models()]
            if len(names) != 1:
                raise InvalidInputError(
                    f"the server serves {len(names)} models ({', '.join(names)}); name one"
                )
            self._default_model = names[0]
        return self._default_model

    def _deadline(self, timeout_s: float | None) -> float | None:
        return self.options.timeout_s if timeout_s == _UNSET else timeout_s

    async def classify(
        self,
        audio: AudioInput,
        *,
        model: str = "",
        version: str = "",
        sample_rate_hz: int | None = None,
        encoding: str | None = None,
        hop_ms: int = 0,
        top_k: int = 0,
        timeout_s: float | None = _UNSET,
    ) -> ClassifyResult:
        """Classifies a whole clip; arguments as in `Client.classify`."""
        wire = clip_audio(audio, sample_rate_hz=sample_rate_hz, encoding=encoding)
        request = pb.ClassifyRequest(
            model=pb.ModelRef(name=await self._model_name(model), version=version),
            format=wire.format,
            audio=wire.data,
            hop_ms=hop_ms,
            top_k=top_k,
        )
        try:
            response = await self._classifier.Classify(
                request, timeout=self._deadline(timeout_s), metadata=self.options.metadata()
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return classify_result_from_proto(response)

    async def stream(
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
        channels: int = 1,
        chunk_ms: int = 100,
        timeout_s: float | None = None,
    ) -> AsyncIterator[StreamResult]:
        """Streams audio and yields results as they arrive; arguments as in `Client.stream`.

        Also accepts async iterables of byte or numpy chunks. Breaking out of the
        `async for` cancels the stream on the server.
        """
        if isinstance(source, AsyncIterable):
            audio = await _async_stream_audio(
                source, sample_rate_hz=sample_rate_hz, encoding=encoding, channels=channels
            )
        else:
            sync_audio = stream_audio(
                source,
                sample_rate_hz=sample_rate_hz,
                encoding=encoding,
                channels=channels,
                chunk_ms=chunk_ms,
            )
            audio = _AsyncStreamAudio(sync_audio.format, _aiter_sync(sync_audio))
        config = config_request(
            audio.format,
            model=await self._model_name(model),
            version=version,
            hop_ms=hop_ms,
            top_k=top_k,
            smoothing=smoothing,
        )
        send_log = SendLog()

        async def requests() -> AsyncIterator[pb.StreamClassifyRequest]:
            yield config
            pacer = Pacer(realtime)
            async for chunk in audio.chunks:
                delay_s = pacer.delay_s(chunk.duration_s)
                if delay_s > 0:
                    await asyncio.sleep(delay_s)
                send_log.record(chunk.duration_s, time.monotonic())
                yield pb.StreamClassifyRequest(audio=chunk.data)

        call = self._classifier.StreamClassify(
            requests(), timeout=timeout_s, metadata=self.options.metadata()
        )
        try:
            async for response in call:
                latency = None
                if response.HasField("window"):
                    latency = send_log.latency_ms(response.window.end_ms, time.monotonic())
                result = stream_result_from_proto(response, latency)
                if result is not None:
                    yield result
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    async def models(self, *, timeout_s: float | None = _UNSET) -> list[ModelInfo]:
        """Lists the models the server has loaded."""
        try:
            response = await self._classifier.ListModels(
                pb.ListModelsRequest(),
                timeout=self._deadline(timeout_s),
                metadata=self.options.metadata(),
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return [model_info_from_proto(info) for info in response.models]

    async def model(
        self, name: str, version: str = "", *, timeout_s: float | None = _UNSET
    ) -> ModelInfo:
        """Describes one model; raises NotFoundError when it is not loaded."""
        request = pb.GetModelRequest(model=pb.ModelRef(name=name, version=version))
        try:
            info = await self._classifier.GetModel(
                request, timeout=self._deadline(timeout_s), metadata=self.options.metadata()
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return model_info_from_proto(info)

    async def model_status(self, *, timeout_s: float | None = _UNSET) -> list[ModelStatus]:
        """Every model of the repository with each version's state; as `Client.model_status`."""
        try:
            response = await self._classifier.ListModelStatus(
                pb.ListModelStatusRequest(),
                timeout=self._deadline(timeout_s),
                metadata=self.options.metadata(),
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return model_statuses_from_proto(response)

    async def load_model(
        self, name: str, *, reload: bool = False, timeout_s: float | None = _UNSET
    ) -> ModelStatus:
        """Loads or updates a model; arguments and errors as in `Client.load_model`."""
        request = load_model_request(name, reload)
        try:
            status = await self._classifier.LoadModel(
                request, timeout=self._deadline(timeout_s), metadata=self.options.metadata()
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return model_status_from_proto(status)

    async def unload_model(self, name: str, *, timeout_s: float | None = _UNSET) -> ModelStatus:
        """Unloads every version of a model; arguments and errors as in `Client.unload_model`."""
        request = unload_model_request(name)
        try:
            status = await self._classifier.UnloadModel(
                request, timeout=self._deadline(timeout_s), metadata=self.options.metadata()
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return model_status_from_proto(status)

    async def rollout_status(self, name: str, *, timeout_s: float | None = _UNSET) -> RolloutStatus:
        """A model's rollout; arguments and errors as in `Client.rollout_status`."""
        request = get_rollout_request(name)
        try:
            status = await self._classifier.GetRollout(
                request, timeout=self._deadline(timeout_s), metadata=self.options.metadata()
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return rollout_status_from_proto(status)

    async def set_rollout(
        self,
        name: str,
        weights: Mapping[str, int] | None,
        *,
        timeout_s: float | None = _UNSET,
        **policy: Any,
    ) -> RolloutStatus:
        """Sets or clears a model's rollout; arguments and errors as in `Client.set_rollout`."""
        request = set_rollout_request(name, weights, **policy)
        try:
            status = await self._classifier.SetRollout(
                request, timeout=self._deadline(timeout_s), metadata=self.options.metadata()
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return rollout_status_from_proto(status)

    async def health(self, service: str = "", *, timeout_s: float | None = _UNSET) -> HealthStatus:
        """Asks `grpc.health.v1` about a service ("" is the whole server)."""
        try:
            response = await self._health.Check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=self._deadline(timeout_s),
                metadata=self.options.metadata(),
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return HealthStatus(service, serving_status_from_proto(response.status))

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


class _AsyncStreamAudio:
    """A stream's wire format and its chunks, delivered asynchronously."""

    def __init__(self, fmt: pb.AudioFormat, chunks: AsyncIterator[AudioChunk]) -> None:
        self.format = fmt
        self.chunks = chunks


async def _aiter_sync(audio: StreamAudio) -> AsyncIterator[AudioChunk]:
    # Files are read in small chunks, so reading them on the loop is cheap.
    for chunk in audio.chunks:
        yield chunk


async def _async_stream_audio(
    items: AsyncIterable[bytes] | AsyncIterable[AudioArray],
    *,
    sample_rate_hz: int | None,
    encoding: str | None,
    channels: int,
) -> _AsyncStreamAudio:
    iterator: AsyncIterator[bytes | AudioArray] = aiter(items)
    try:
        first: bytes | AudioArray = await anext(iterator)
    except StopAsyncIteration:
        raise InvalidInputError("the audio iterator yielded nothing") from None
    fmt = format_of_first_chunk(
        first, sample_rate_hz=sample_rate_hz, encoding=encoding, channels=channels
    )
    rate = bytes_per_second(fmt)

    async def chunks() -> AsyncIterator[AudioChunk]:
        yield chunk_of(first, rate)
        async for item in iterator:
            yield chunk_of(item, rate)

    return _AsyncStreamAudio(fmt, chunks())
