"""The blocking SDK client."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mozart_client.audio import AudioInput, StreamInput, clip_audio, stream_audio
from mozart_client.connection import (
    DEFAULT_TARGET,
    ConnectionOptions,
    RetryPolicy,
    TlsConfig,
    open_channel,
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


class Client:
    """A connection to a Mozart server, for blocking code.

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
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Opens a channel (lazily; nothing is sent until the first call).

        Args:
            target: `host:port` of the server.
            tls: TLS settings; None for plaintext.
            token: Bearer token for servers that require one.
            timeout_s: Default deadline of unary calls, in seconds.
            retry: Retry policy of idempotent unary calls (default: 5 attempts,
                exponential backoff from 0.1 s, on UNAVAILABLE only).
        """
        self.options = ConnectionOptions(
            target=target, tls=tls, token=token, timeout_s=timeout_s, retry=retry or RetryPolicy()
        )
        self._default_model: str | None = None
        self._channel = open_channel(self.options)
        # The generated stubs work over both sync and asyncio channels.
        self._classifier = pb_grpc.AudioClassifierStub(self._channel)  # type: ignore[no-untyped-call]
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def _model_name(self, model: str) -> str:
        """The model to use: the one asked for, else the server's only model."""
        if model:
            return model
        if self._default_model is None:
            names = [info.name for info in self.models()]
            if len(names) != 1:
                raise InvalidInputError(
                    f"the server serves {len(names)} models ({', '.join(names)}); name one"
                )
            self._default_model = names[0]
        return self._default_model

    def _deadline(self, timeout_s: float | None) -> float | None:
        return self.options.timeout_s if timeout_s == _UNSET else timeout_s

    def classify(
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
        """Classifies a whole clip.

        Args:
            audio: A file path, encoded bytes (WAV, FLAC, Ogg, MP3, AIFF or raw PCM),
                or a numpy array of samples, shape (frames,) or (frames, channels).
            model: Model name; empty picks the server's only model (an error if it has several).
            version: Model version; empty means the newest serving one.
            sample_rate_hz: Rate of numpy arrays and raw PCM bytes.
            encoding: `pcm_s16le` or `pcm_f32le` for raw PCM bytes.
            hop_ms: Distance between window starts; 0 takes the model default.
            top_k: Labels per result; 0 takes the server default.
            timeout_s: Deadline in seconds; defaults to `options.timeout_s`,
                None waits forever.

        Returns:
            Per-window results and the clip summary.

        Raises:
            MozartError: A subclass for each gRPC status, or InvalidInputError
                for input that could not be read.
        """
        wire = clip_audio(audio, sample_rate_hz=sample_rate_hz, encoding=encoding)
        request = pb.ClassifyRequest(
            model=pb.ModelRef(name=self._model_name(model), version=version),
            format=wire.format,
            audio=wire.data,
            hop_ms=hop_ms,
            top_k=top_k,
        )
        try:
            response = self._classifier.Classify(
                request, timeout=self._deadline(timeout_s), metadata=self.options.metadata()
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return classify_result_from_proto(response)

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
        channels: int = 1,
        chunk_ms: int = 100,
        timeout_s: float | None = None,
    ) -> Iterator[StreamResult]:
        """Streams audio and yields results as the server sends them.

        The input is checked before anything is sent, so a bad file raises here;
        server errors raise while iterating. Leaving the loop early cancels the
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
            sample_rate_hz: Rate of numpy input and raw PCM byte chunks.
            encoding: `pcm_s16le`, `pcm_f32le` or `wav`, for byte chunks.
            channels: Channels of raw PCM byte chunks.
            chunk_ms: Audio per message for files and arrays.
            timeout_s: Deadline of the whole stream; None (the default) for none.

        Returns:
            An iterator of WindowResult (interim, with client-side latency),
            StreamNotice (in-band problems) and, last, one Summary.
        """
        audio = stream_audio(
            source,
            sample_rate_hz=sample_rate_hz,
            encoding=encoding,
            channels=channels,
            chunk_ms=chunk_ms,
        )
        config = config_request(
            audio.format,
            model=self._model_name(model),
            version=version,
            hop_ms=hop_ms,
            top_k=top_k,
            smoothing=smoothing,
        )
        send_log = SendLog()

        def requests() -> Iterator[pb.StreamClassifyRequest]:
            yield config
            pacer = Pacer(realtime)
            for chunk in audio.chunks:
                time.sleep(pacer.delay_s(chunk.duration_s))
                send_log.record(chunk.duration_s, time.monotonic())
                yield pb.StreamClassifyRequest(audio=chunk.data)

        call = self._classifier.StreamClassify(
            requests(), timeout=timeout_s, metadata=self.options.metadata()
        )
        return _stream_results(call, send_log)

    def models(self, *, timeout_s: float | None = _UNSET) -> list[ModelInfo]:
        """Lists the models the server has loaded."""
        try:
            response = self._classifier.ListModels(
                pb.ListModelsRequest(),
                timeout=self._deadline(timeout_s),
                metadata=self.options.metadata(),
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return [model_info_from_proto(info) for info in response.models]

    def model(self, name: str, version: str = "", *, timeout_s: float | None = _UNSET) -> ModelInfo:
        """Describes one model; raises NotFoundError when it is not loaded."""
        request = pb.GetModelRequest(model=pb.ModelRef(name=name, version=version))
        try:
            info = self._classifier.GetModel(
                request, timeout=self._deadline(timeout_s), metadata=self.options.metadata()
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return model_info_from_proto(info)

    def model_status(self, *, timeout_s: float | None = _UNSET) -> list[ModelStatus]:
        """Lists every model of the server's repository with the state of each version.

        Unlike `models()`, this includes versions that are loading, unloading or
        failed to load, with the reason.
        """
        try:
            response = self._classifier.ListModelStatus(
                pb.ListModelStatusRequest(),
                timeout=self._deadline(timeout_s),
                metadata=self.options.metadata(),
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return model_statuses_from_proto(response)

    def load_model(
        self, name: str, *, reload: bool = False, timeout_s: float | None = _UNSET
    ) -> ModelStatus:
        """Loads a model from the server's repository, or brings a loaded one up to date.

        The server loads the versions its version policy selects, warms them up
        and only then lets them take traffic; versions no longer selected drain.
        Needs a server started with `--model-control-mode explicit`.

        Args:
            name: The model's name in the repository.
            reload: Load every selected version again, even those serving and
                unchanged on disk (the new copies swap in once warmed up).
            timeout_s: Deadline in seconds; defaults to `options.timeout_s`,
                None waits forever. Large models may need longer to load.

        Returns:
            The model's status after the load.

        Raises:
            FailedPreconditionError: The server is not in explicit model-control
                mode, or a selected version failed to load (those serving keep serving).
            NotFoundError: The repository has no such model.
            InvalidInputError: `name` is empty (nothing is sent).
        """
        request = load_model_request(name, reload)
        try:
            status = self._classifier.LoadModel(
                request, timeout=self._deadline(timeout_s), metadata=self.options.metadata()
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return model_status_from_proto(status)

    def unload_model(self, name: str, *, timeout_s: float | None = _UNSET) -> ModelStatus:
        """Unloads every version of a model; calls in flight on it finish.

        Needs a server started with `--model-control-mode explicit`.

        Args:
            name: The model's name.
            timeout_s: Deadline in seconds; defaults to `options.timeout_s`.

        Returns:
            The model's status after the unload.

        Raises:
            FailedPreconditionError: The server is not in explicit model-control mode.
            NotFoundError: The model is not loaded.
            InvalidInputError: `name` is empty (nothing is sent).
        """
        request = unload_model_request(name)
        try:
            status = self._classifier.UnloadModel(
                request, timeout=self._deadline(timeout_s), metadata=self.options.metadata()
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return model_status_from_proto(status)

    def rollout_status(self, name: str, *, timeout_s: float | None = _UNSET) -> RolloutStatus:
        """A model's rollout: weights in force, state, last event and per-version figures.

        Raises:
            NotFoundError: The server knows no such model.
            InvalidInputError: `name` is empty (nothing is sent).
        """
        request = get_rollout_request(name)
        try:
            status = self._classifier.GetRollout(
                request, timeout=self._deadline(timeout_s), metadata=self.options.metadata()
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return rollout_status_from_proto(status)

    def set_rollout(
        self,
        name: str,
        weights: Mapping[str, int] | None,
        *,
        timeout_s: float | None = _UNSET,
        **policy: Any,
    ) -> RolloutStatus:
        """Sets a model's rollout (`weights=None` clears it); the server loads its versions.

        Args:
            name: The model's name.
            weights: Percent of unversioned calls by version, summing to 100,
                e.g. `{"3": 90, "4": 10}`; None removes the rollout.
            timeout_s: Deadline in seconds; loading a version may take a while.
            **policy: `shadow`, `max_error_ratio`, `max_p99_latency_ratio`,
                `min_agreement`, `min_samples`, `window_size`, `auto_promote`,
                `promote_after_s` (docs/server.md, "Rollout").

        Raises:
            InvalidInputError: Weights naming versions the repository lacks or not
                summing to 100 (INVALID_ARGUMENT), or an empty name.
            NotFoundError: The repository has no such model.
        """
        request = set_rollout_request(name, weights, **policy)
        try:
            status = self._classifier.SetRollout(
                request, timeout=self._deadline(timeout_s), metadata=self.options.metadata()
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return rollout_status_from_proto(status)

    def health(self, service: str = "", *, timeout_s: float | None = _UNSET) -> HealthStatus:
        """Asks `grpc.health.v1` about a service ("" is the whole server)."""
        try:
            response = self._health.Check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=self._deadline(timeout_s),
                metadata=self.options.metadata(),
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return HealthStatus(service, serving_status_from_proto(response.status))

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


def _stream_results(
    call: grpc.CallIterator[pb.StreamClassifyResponse], send_log: SendLog
) -> Iterator[StreamResult]:
    try:
        for response in call:
            latency = None
            if response.HasField("window"):
                latency = send_log.latency_ms(response.window.end_ms, time.monotonic())
            result = stream_result_from_proto(response, latency)
            if result is not None:
                yield result
    except grpc.RpcError as error:
        raise from_rpc_error(error) from None
    finally:
        # Cancelling a finished call is a no-op; an abandoned one stops the server's work.
        call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves cancel() untyped
