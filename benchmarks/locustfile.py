"""Locust users that load a Mozart server over gRPC: Classify, real-time streams, Triton v2.

    locust -f benchmarks/locustfile.py UnaryUser --headless -u 8 -t 20s \
        --host 127.0.0.1:8001 --model composer-cnn --clips 'demo/clips/*.flac'

Every response is checked (label count, NaN, multiclass scores summing to 1); a bad one
counts as a failure. `--raw-csv PATH` also writes every request with its exact latency,
because Locust's own percentiles round to whole milliseconds.
"""

from __future__ import annotations

import csv
import functools
import math
import random
import time
from collections.abc import Iterator
from typing import Any

import gevent
import grpc
import grpc.experimental.gevent as grpc_gevent  # type: ignore[import-not-found]
import numpy as np
from locust import User, constant, events, task
from locust.env import Environment

from benchmarks.checks import ModelFacts, ResponseError, check_scores
from benchmarks.clips import Clip, flac_bytes, load_clips, pcm_s16le, resample, segments
from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_proto.inference import grpc_service_pb2_grpc as v2_grpc
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc

# Without this, gRPC's blocking calls block the whole process: users run one at a time
# and streams hang. It must run before any channel exists.
grpc_gevent.init_gevent()
# gRPC's gevent integration waits for blocking calls (each open stream's next response)
# on gevent's threadpool, 10 threads by default: with more than about 10 streams, results
# then wait on the client and the measured latency is Locust's, not the server's.
gevent.get_hub().threadpool.maxsize = 1024

CHUNK_S = 0.1  # real-time streams send 100 ms of audio per message
CLASSIFY_SEGMENTS = 32


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _add_arguments(parser: Any) -> None:
    parser.add_argument("--model", default="composer-cnn", help="Model to load")
    parser.add_argument("--clips", default="demo/clips/*.flac", help="Glob of real clips")
    parser.add_argument(
        "--unary-mode",
        choices=("clips", "single-window"),
        default="clips",
        help="clips: 3-10 s FLAC clips; single-window: one window of PCM (overhead runs)",
    )
    parser.add_argument("--stream-seconds", type=float, default=10.0, help="Length of a stream")
    parser.add_argument(
        "--hop-ms", type=int, default=0, help="Streams' hop in ms; 0 takes the model's default"
    )
    parser.add_argument(
        "--stream-rate",
        choices=("clip", "model"),
        default="clip",
        help="clip: stream at the clip's own rate (the server resamples); model: at the model's",
    )
    parser.add_argument("--raw-csv", default="", help="Write every request to this CSV")


@functools.cache
def _clips(pattern: str) -> tuple[Clip, ...]:
    return tuple(load_clips(pattern))


@functools.cache
def _flac_segments(pattern: str) -> tuple[bytes, ...]:
    """Classify's request audio: FLAC clips of 3-10 s, cut and encoded once per process."""
    return tuple(map(flac_bytes, segments(list(_clips(pattern)), CLASSIFY_SEGMENTS, 3.0, 10.0,
                                          seed=1)))  # fmt: skip


@functools.cache
def _classify_audio(
    pattern: str, mode: str, rate_hz: int, window: int
) -> tuple[pb.AudioFormat, tuple[bytes, ...]]:
    """Request audio cut once per process: FLAC clips of 3-10 s, or single PCM windows."""
    if mode == "single-window":
        cut = segments(list(_clips(pattern)), CLASSIFY_SEGMENTS, 10.0, 10.0, seed=1)
        windows = tuple(pcm_s16le(resample(clip, rate_hz)[:window]) for clip in cut)
        audio_format = pb.AudioFormat(
            encoding=pb.AUDIO_ENCODING_PCM_S16LE, sample_rate_hz=rate_hz, channels=1
        )
        return audio_format, windows
    return pb.AudioFormat(encoding=pb.AUDIO_ENCODING_FLAC), _flac_segments(pattern)


@functools.cache
def _v2_windows(pattern: str, rate_hz: int, window: int) -> tuple[bytes, ...]:
    """ModelInfer's inputs: real windows at the model's rate, as FP32 bytes, once per process."""
    cut = segments(list(_clips(pattern)), 16, 10.0, 10.0, seed=2)
    return tuple(
        np.ascontiguousarray(resample(clip, rate_hz)[:window], dtype="<f4").tobytes()
        for clip in cut
    )


@events.init.add_listener  # type: ignore[untyped-decorator]
def _prepare(environment: Environment, **_: Any) -> None:
    """Decodes and cuts the clips before the run's clock starts, not inside a short phase."""
    options = environment.parsed_options
    if options is None:
        return
    _clips(options.clips)
    if options.unary_mode == "clips":
        _flac_segments(options.clips)
    _stream_clips(options.clips, options.stream_seconds)


@functools.cache
def _stream_clips(pattern: str, seconds: float) -> tuple[Clip, ...]:
    """Stream audio of `seconds` each: a real clip, looped when it is shorter.

    Looping keeps a stream open (and its windows coming at the hop's rate) for the whole
    length, so N streams are N continuous real-time streams.
    """
    cut = segments(list(_clips(pattern)), 8, seconds, seconds, seed=3)
    return tuple(
        Clip(clip.name, np.resize(clip.samples, round(seconds * clip.sample_rate_hz)),
             clip.sample_rate_hz)
        for clip in cut
    )  # fmt: skip


_raw_rows: list[tuple[str, str, float, float, int, str]] = []


@events.request.add_listener  # type: ignore[untyped-decorator]
def _keep_raw(
    request_type: str,
    name: str,
    response_time: float,
    response_length: int,
    exception: BaseException | None = None,
    **_: Any,
) -> None:
    error = "" if exception is None else f"{type(exception).__name__}: {exception}"
    _raw_rows.append((request_type, name, time.time(), response_time, response_length, error))


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _write_raw(environment: Environment, **_: Any) -> None:
    path = environment.parsed_options.raw_csv if environment.parsed_options else ""
    if not path:
        return
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(("type", "name", "end_time_s", "latency_ms", "windows", "error"))
        writer.writerows(_raw_rows)


def _describe_error(error: grpc.RpcError) -> ResponseError:
    code = error.code() if isinstance(error, grpc.Call) else None
    details = error.details() if isinstance(error, grpc.Call) else str(error)
    return ResponseError(f"{code}: {details}")


class GrpcUser(User):
    """A user with one channel to the server and the model's facts."""

    abstract = True
    wait_time = constant(0)

    def on_start(self) -> None:
        """Opens the channel and reads the model's labels, rate and window."""
        options = self.environment.parsed_options
        assert options is not None
        assert self.host
        self.options = options
        self.channel = grpc.insecure_channel(self.host)
        self.stub = pb_grpc.AudioClassifierStub(self.channel)
        info = self.stub.GetModel(
            pb.GetModelRequest(model=pb.ModelRef(name=options.model)), timeout=30
        )
        self.facts = ModelFacts(
            labels=len(info.labels),
            multiclass=info.task == pb.TASK_MULTICLASS,
            sample_rate_hz=info.sample_rate_hz,
            window_samples=info.window_samples,
        )

    def on_stop(self) -> None:
        """Closes the channel."""
        self.channel.close()

    def record(
        self, kind: str, name: str, seconds: float, windows: int, error: Exception | None
    ) -> None:
        """Reports one request to Locust (latency in ms, windows as the response length)."""
        self.environment.events.request.fire(
            request_type=kind,
            name=name,
            response_time=seconds * 1000,
            response_length=windows,
            exception=error,
            context={},
        )


class UnaryUser(GrpcUser):
    """Classify on real clips of 3-10 s (or single windows with --unary-mode single-window)."""

    def on_start(self) -> None:
        """Prepares the request audio once per process."""
        super().on_start()
        self.format, self.audio = _classify_audio(
            self.options.clips,
            self.options.unary_mode,
            self.facts.sample_rate_hz,
            self.facts.window_samples,
        )

    @task
    def classify(self) -> None:
        """One Classify call, checked."""
        request = pb.ClassifyRequest(
            model=pb.ModelRef(name=self.options.model),
            format=self.format,
            audio=random.choice(self.audio),
        )
        started = time.perf_counter()
        windows = 0
        error: Exception | None = None
        try:
            response = self.stub.Classify(request, timeout=60)
            windows = len(response.windows)
            self._check(response)
        except grpc.RpcError as rpc_error:
            error = _describe_error(rpc_error)
        except ResponseError as bad:
            error = bad
        self.record("grpc", "Classify", time.perf_counter() - started, windows, error)

    def _check(self, response: pb.ClassifyResponse) -> None:
        if not response.windows:
            raise ResponseError("no windows in the response")
        if [window.index for window in response.windows] != list(range(len(response.windows))):
            raise ResponseError("window indices are not 0..n-1")
        for window in response.windows:
            check_scores(window.scores, self.facts)
        check_scores(response.summary.scores, self.facts)
        if response.summary.window_count != len(response.windows):
            raise ResponseError("the summary counts another number of windows")


class StreamUser(GrpcUser):
    """Streams a real clip (looped to --stream-seconds) at real-time pace in 100 ms chunks.

    Each window's latency runs from sending the chunk that holds the window's last sample
    to receiving its result, and is recorded as request type `window`.
    """

    def on_start(self) -> None:
        """Waits a random part of a window first, so streams do not all cut windows at once."""
        super().on_start()
        time.sleep(random.uniform(0, self.facts.window_samples / self.facts.sample_rate_hz))

    @task
    def stream(self) -> None:
        """One stream of --stream-seconds of a real clip, at real-time pace."""
        seconds = self.options.stream_seconds
        clip = random.choice(_stream_clips(self.options.clips, seconds))
        if self.options.stream_rate == "model":
            rate = self.facts.sample_rate_hz
            clip = Clip(clip.name, resample(clip, rate), rate)
        chunk_samples = round(clip.sample_rate_hz * CHUNK_S)
        pcm = pcm_s16le(clip.samples)
        sent_at: list[float] = []
        config = pb.StreamConfig(
            model=pb.ModelRef(name=self.options.model),
            format=pb.AudioFormat(
                encoding=pb.AUDIO_ENCODING_PCM_S16LE,
                sample_rate_hz=clip.sample_rate_hz,
                channels=1,
            ),
            hop_ms=self.options.hop_ms,
        )

        def requests() -> Iterator[pb.StreamClassifyRequest]:
            yield pb.StreamClassifyRequest(config=config)
            start = time.perf_counter()
            for index, offset in enumerate(range(0, len(pcm), chunk_samples * 2)):
                # Real time: chunk k leaves k * 100 ms after the first (gevent's sleep).
                time.sleep(max(0.0, start + index * CHUNK_S - time.perf_counter()))
                sent_at.append(time.perf_counter())
                yield pb.StreamClassifyRequest(audio=pcm[offset : offset + chunk_samples * 2])

        started = time.perf_counter()
        windows = 0
        error: Exception | None = None
        try:
            for response in self.stub.StreamClassify(requests(), timeout=seconds + 60):
                kind = response.WhichOneof("result")
                if kind == "window":
                    windows += 1
                    self._record_window(response.window, clip, chunk_samples, sent_at)
                elif kind == "notice":
                    notice = ResponseError(f"{response.notice.code}: {response.notice.message}")
                    self.record("window", "StreamClassify window", 0.0, 0, notice)
                elif kind == "summary":
                    check_scores(response.summary.scores, self.facts)
        except grpc.RpcError as rpc_error:
            error = _describe_error(rpc_error)
        except ResponseError as bad:
            error = bad
        self.record("stream", "StreamClassify", time.perf_counter() - started, windows, error)

    def _record_window(
        self, window: pb.WindowResult, clip: Clip, chunk_samples: int, sent_at: list[float]
    ) -> None:
        received = time.perf_counter()
        last_sample = max(0, math.ceil(window.end_ms * clip.sample_rate_hz / 1000) - 1)
        chunk = min(last_sample // chunk_samples, len(sent_at) - 1)
        error: Exception | None = None
        try:
            check_scores(window.scores, self.facts)
        except ResponseError as bad:
            error = bad
        self.record("window", "StreamClassify window", received - sent_at[chunk], 1, error)


class V2User(GrpcUser):
    """ModelInfer through the Triton (Open Inference Protocol v2) service, one window a call."""

    def on_start(self) -> None:
        """Cuts real windows at the model's rate once."""
        super().on_start()
        self.v2 = v2_grpc.GRPCInferenceServiceStub(self.channel)
        self.windows = _v2_windows(
            self.options.clips, self.facts.sample_rate_hz, self.facts.window_samples
        )

    @task
    def infer(self) -> None:
        """One ModelInfer of shape [1, window_samples], checked."""
        request = v2.ModelInferRequest(
            model_name=self.options.model,
            inputs=[
                v2.ModelInferRequest.InferInputTensor(
                    name="waveform", datatype="FP32", shape=[1, self.facts.window_samples]
                )
            ],
            outputs=[v2.ModelInferRequest.InferRequestedOutputTensor(name="probabilities")],
            raw_input_contents=[random.choice(self.windows)],
        )
        started = time.perf_counter()
        error: Exception | None = None
        try:
            response = self.v2.ModelInfer(request, timeout=30)
            self._check(response)
        except grpc.RpcError as rpc_error:
            error = _describe_error(rpc_error)
        except ResponseError as bad:
            error = bad
        self.record("grpc", "ModelInfer", time.perf_counter() - started, 1, error)

    def _check(self, response: v2.ModelInferResponse) -> None:
        names = [output.name for output in response.outputs]
        if "probabilities" not in names or len(response.raw_output_contents) != len(names):
            raise ResponseError(f"outputs {names} without raw contents for probabilities")
        index = names.index("probabilities")
        shape = list(response.outputs[index].shape)
        if shape != [1, self.facts.labels]:
            raise ResponseError(f"probabilities shape {shape}, expected [1, {self.facts.labels}]")
        scores = np.frombuffer(response.raw_output_contents[index], dtype="<f4")
        check_scores(scores.tolist(), self.facts)
