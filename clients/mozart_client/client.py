"""The blocking SDK client: sends what `_calls` prepares and waits for the answers."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2_grpc

from mozart_client._calls import CallCore, UnaryCall, clip_from_stream
from mozart_client._resample import ChunkResampler, check_resamplable, resampled
from mozart_client._streaming import Pacer, SendLog, StreamOptions, StreamReceiver, stream_options
from mozart_client.audio import AudioInput, StreamAudio, StreamInput, stream_audio
from mozart_client.connection import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_TARGET,
    ConnectionOptions,
    RetryPolicy,
    TlsConfig,
    new_request_id,
    open_channel,
)
from mozart_client.errors import from_rpc_error
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


class Client:
    """A connection to a Mozart server, for blocking code.

    Every call sends metadata `x-request-id` (the `request_id` given, else a new
    uuid4 in hex); the server logs the call under it, and errors carry it as
    `MozartError.request_id`.

    Example:
        >>> with Client("localhost:8001") as client:
        ...     result = client.classify("song.wav")
        ...     print(result.summary.label)
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
        """Opens a channel (lazily; nothing is sent until the first call).

        Args:
            target: `host:port` of the server.
            tls: TLS settings; None for plaintext.
            token: Bearer token for servers that require one.
            timeout_s: Default deadline of unary calls, in seconds; None for none.
            retry: Retry policy of idempotent unary calls (default: 5 attempts,
                exponential backoff from 0.1 s, on UNAVAILABLE only).
            max_message_bytes: Largest message this client sends or receives
                (64 MiB); for longer clips see `classify_large`.
        """
        self.options = ConnectionOptions(
            target=target,
            tls=tls,
            token=token,
            timeout_s=timeout_s,
            retry=retry or RetryPolicy(),
            max_message_bytes=max_message_bytes,
        )
        self._core = CallCore(self.options)
        self._channel = open_channel(self.options)
        # The generated stubs work over both sync and asyncio channels.
        self._classifier = pb_grpc.AudioClassifierStub(self._channel)  # type: ignore[no-untyped-call]
        self._stubs: dict[str, Any] = {
            "classifier": self._classifier,
            "health": health_pb2_grpc.HealthStub(self._channel),
        }

    def _send(self, call: UnaryCall[R]) -> R:
        """Sends one prepared unary call: the only place unary errors are converted."""
        method = getattr(self._stubs[call.service], call.method)
        try:
            response = method(call.request, timeout=call.timeout_s, metadata=call.metadata)
        except grpc.RpcError as error:
            raise from_rpc_error(error, call.request_id) from None
        return call.parse(response)

    def _model_name(self, model: str) -> str:
        return self._core.known_model(model) or self._core.only_model(self.models())

    def classify(
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
        """Classifies a whole clip (one message: see `classify_large` for longer ones).

        Args:
            audio: A file path, encoded bytes (WAV, FLAC, Ogg, MP3, AIFF or raw PCM),
                or a numpy array of samples, shape (frames,) or (frames, channels).
            model: Model name; empty picks the server's only model (an error if it has several).
            version: Model version; empty means the newest serving one.
            sample_rate_hz: Rate of numpy arrays and raw PCM bytes.
            encoding: `pcm_s16le` or `pcm_f32le` for raw PCM bytes.
            channels: Channels of raw PCM bytes, interleaved (1 when not given).
            hop_ms: Distance between window starts; 0 takes the model default.
            top_k: Labels per result; 0 takes the server default.
            include_embedding: Also return each window's embedding (`WindowResult.embedding`).
            timeout_s: Deadline in seconds; None takes `options.timeout_s`, math.inf
                waits forever.
            request_id: The call's `x-request-id`; None makes one up.

        Returns:
            Per-window results and the clip summary.

        Raises:
            MozartError: A subclass for each gRPC status, or InvalidInputError
                for input that could not be read (nothing is sent then).
        """
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
            model=self._model_name(model),
            version=version,
            hop_ms=hop_ms,
            top_k=top_k,
            include_embedding=include_embedding,
            timeout_s=timeout_s,
            request_id=request_id,
        )
        return self._send(call)

    def stream(
        self,
        source: StreamInput,
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
    ) -> Iterator[StreamResult]:
        """Streams audio and yields results as the server sends them.

        The input and the options are checked when this is called, before anything
        is sent, so a bad file raises here; anything the server says (the model
        lookup included) raises while iterating. Leaving the loop early cancels the
        stream on the server.

        Args:
            source: A file path, a numpy array, or an iterable of byte or numpy
                chunks (for instance `microphone_chunks()`).
            model: Model name; empty picks the server's only model (an error if it has several).
            version: Model version; empty means the newest serving one.
            realtime: Send audio no faster than it plays, as a live source would;
                otherwise as fast as the server accepts it.
            hop_ms: Distance between window starts; 0 takes the model default.
            top_k: Labels per result; 0 takes the server default.
            smoothing: EMA weight of the past in [0, 1); 0 disables smoothing.
                Results carry both `top_k` (raw) and `smoothed_top_k`.
            sample_rate_hz: Rate of numpy input and raw PCM byte chunks.
            encoding: `pcm_s16le`, `pcm_f32le` or `wav`, for byte chunks.
            channels: Channels of raw PCM byte chunks, interleaved (1 when not
                given); an array's shape says its own.
            chunk_ms: Audio per message for files and arrays.
            include_embedding: Also return each window's embedding.
            resample_on_client: Resample to the model's rate here (soxr, the
                `resample` extra), so the server does not; the audio goes as mono
                32-bit float at the model's rate. Not for WAV byte chunks.
            timeout_s: Deadline of the whole stream; None (the default) for none.
            request_id: The stream's `x-request-id`; None makes one up.

        Returns:
            An iterator of WindowResult (interim, with client-side latency),
            StreamNotice (in-band problems) and, last, one Summary; window and
            summary carry the model's `labels`.
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
        audio = stream_audio(
            source,
            sample_rate_hz=sample_rate_hz,
            encoding=encoding,
            channels=channels,
            chunk_ms=chunk_ms,
        )
        if resample_on_client:
            check_resamplable(audio.format)
        return self._stream(audio, options)

    def _stream(self, audio: StreamAudio, options: StreamOptions) -> Iterator[StreamResult]:
        """The stream itself, from the first iteration: model lookup, config, audio, results."""
        model = self._model_name(options.model)
        fmt, chunks = audio.format, audio.chunks
        if options.resample_on_client:
            rate = self.model(model, options.version).sample_rate_hz
            resampler = ChunkResampler(fmt, rate)
            fmt, chunks = resampler.format, resampled(chunks, resampler)
        config = options.config(fmt, model)
        send_log = SendLog()

        def requests() -> Iterator[pb.StreamClassifyRequest]:
            yield config
            pacer = Pacer(options.realtime)
            for chunk in chunks:
                time.sleep(pacer.delay_s(chunk.duration_s))
                send_log.record(chunk.duration_s, time.monotonic())
                yield pb.StreamClassifyRequest(audio=chunk.data)

        call = self._classifier.StreamClassify(
            requests(), timeout=options.timeout_s, metadata=options.metadata
        )
        receiver = StreamReceiver(send_log)
        try:
            for response in call:
                result = receiver.result(response)
                if result is not None:
                    yield result
        except grpc.RpcError as error:
            raise from_rpc_error(error, options.request_id) from None
        finally:
            # Cancelling a finished call is a no-op; an abandoned one stops the server's work.
            call.cancel()

    def classify_large(
        self,
        source: StreamInput,
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
        """Classifies a clip too big for one message, through StreamClassify.

        The clip goes in chunks over one stream with `hop_ms` as its hop and no
        smoothing, and the answer has Classify's shape: the same windows and
        summary that `classify()` returns for a clip that fits in a message.

        Args:
            source: A file path, a numpy array, or an iterable of chunks (as `stream`).
            chunk_ms: Audio per message (0.5 s: under the server's 1 MiB
                max_chunk_bytes up to 192 kHz stereo float).
            timeout_s: Deadline of the whole clip; None (the default) for none.
            Others: as in `stream`.

        Raises:
            MozartError: as `classify`; ResourceExhaustedError when the server
                dropped a window because its queue was full.
        """
        options_id = new_request_id(request_id)
        results = list(
            self.stream(
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
                request_id=options_id,
            )
        )
        return clip_from_stream(results, model, version, options_id)

    def models(
        self, *, timeout_s: float | None = None, request_id: str | None = None
    ) -> list[ModelInfo]:
        """Lists the models the server has loaded."""
        return self._send(self._core.models(timeout_s, request_id))

    def model(
        self,
        name: str,
        version: str = "",
        *,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> ModelInfo:
        """Describes one model; raises NotFoundError when it is not loaded."""
        return self._send(self._core.model(name, version, timeout_s, request_id))

    def model_status(
        self, *, timeout_s: float | None = None, request_id: str | None = None
    ) -> list[ModelStatus]:
        """Lists every model of the server's repository with the state of each version.

        Unlike `models()`, this includes versions that are loading, unloading or
        failed to load, with the reason.
        """
        return self._send(self._core.model_status(timeout_s, request_id))

    def load_model(
        self,
        name: str,
        *,
        reload: bool = False,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> ModelStatus:
        """Loads a model from the server's repository, or brings a loaded one up to date.

        The server loads the versions its version policy selects, warms them up
        and only then lets them take traffic; versions no longer selected drain.
        Needs a server started with `--model-control-mode explicit`.

        Args:
            name: The model's name in the repository.
            reload: Load every selected version again, even those serving and
                unchanged on disk (the new copies swap in once warmed up).
            timeout_s: Deadline in seconds; None takes `options.timeout_s`,
                math.inf waits forever. Large models may need longer to load.
            request_id: The call's `x-request-id`; None makes one up.

        Returns:
            The model's status after the load.

        Raises:
            FailedPreconditionError: The server is not in explicit model-control
                mode, or a selected version failed to load (those serving keep serving).
            NotFoundError: The repository has no such model.
            InvalidInputError: `name` is empty (nothing is sent).
        """
        return self._send(self._core.load_model(name, reload, timeout_s, request_id))

    def unload_model(
        self, name: str, *, timeout_s: float | None = None, request_id: str | None = None
    ) -> ModelStatus:
        """Unloads every version of a model; calls in flight on it finish.

        Needs a server started with `--model-control-mode explicit`.

        Args:
            name: The model's name.
            timeout_s: Deadline in seconds; None takes `options.timeout_s`.
            request_id: The call's `x-request-id`; None makes one up.

        Returns:
            The model's status after the unload.

        Raises:
            FailedPreconditionError: The server is not in explicit model-control mode.
            NotFoundError: The model is not loaded.
            InvalidInputError: `name` is empty (nothing is sent).
        """
        return self._send(self._core.unload_model(name, timeout_s, request_id))

    def rollout_status(
        self, name: str, *, timeout_s: float | None = None, request_id: str | None = None
    ) -> RolloutStatus:
        """A model's rollout: weights in force, state, last event and per-version figures.

        Raises:
            NotFoundError: The server knows no such model.
            InvalidInputError: `name` is empty (nothing is sent).
        """
        return self._send(self._core.rollout_status(name, timeout_s, request_id))

    def set_rollout(
        self,
        name: str,
        weights: Mapping[str, int] | None,
        *,
        timeout_s: float | None = None,
        request_id: str | None = None,
        **policy: Any,
    ) -> RolloutStatus:
        """Sets a model's rollout (`weights=None` clears it); the server loads its versions.

        Args:
            name: The model's name.
            weights: Percent of unversioned calls by version, summing to 100,
                e.g. `{"3": 90, "4": 10}`; None removes the rollout.
            timeout_s: Deadline in seconds; loading a version may take a while.
            request_id: The call's `x-request-id`; None makes one up.
            **policy: `shadow`, `max_error_ratio`, `max_p99_latency_ratio`,
                `min_agreement`, `min_samples`, `window_size`, `auto_promote`,
                `promote_after_s` (docs/server.md, "Rollout").

        Raises:
            InvalidInputError: Weights naming versions the repository lacks or not
                summing to 100 (INVALID_ARGUMENT), or an empty name.
            NotFoundError: The repository has no such model.
        """
        return self._send(self._core.set_rollout(name, weights, policy, timeout_s, request_id))

    def health(
        self, service: str = "", *, timeout_s: float | None = None, request_id: str | None = None
    ) -> HealthStatus:
        """Asks `grpc.health.v1` about a service ("" is the whole server)."""
        return self._send(self._core.health(service, timeout_s, request_id))

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
