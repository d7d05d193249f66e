"""Retries, deadlines and error mapping, against a scripted gRPC peer.

The real server cannot be made to answer UNAVAILABLE on cue, so these tests run
a small gRPC server that fails the first calls of a method on purpose and
counts every attempt that reaches it. What is under test is the SDK's channel
configuration, which only a real gRPC peer can exercise: the retries happen
inside gRPC's C core, driven by the service config the SDK sets.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import pytest

from mozart_client import (
    AsyncClient,
    Client,
    DeadlineExceededError,
    InvalidInputError,
    RetryPolicy,
    UnavailableError,
)
from mozart_client.errors import (
    NotFoundError,
    OutOfRangeError,
    ResourceExhaustedError,
    ServerError,
    UnauthenticatedError,
    from_rpc_error,
)
from mozart_proto.v1 import audio_classifier_pb2 as pb

SERVICE = "mozart.v1.AudioClassifier"


class ScriptedPeer:
    """Fails the first `failures` calls of every method with `code`, then answers."""

    def __init__(self, failures: int, code: grpc.StatusCode, delay_s: float = 0.0) -> None:
        self.failures = failures
        self.code = code
        self.delay_s = delay_s
        self.attempts: Counter[str] = Counter()
        self.metadata: list[dict[str, str]] = []
        self.time_remaining: list[float | None] = []
        self.stream_configs: list[pb.StreamConfig] = []
        self.stream_audio_bytes = 0
        self._lock = threading.Lock()

    def _attempt(self, method: str, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.attempts[method] += 1
            attempt = self.attempts[method]
            self.metadata.append({k: str(v) for k, v in context.invocation_metadata()})
            self.time_remaining.append(context.time_remaining())
        time.sleep(self.delay_s)
        if attempt <= self.failures:
            context.abort(self.code, f"scripted failure {attempt}")

    def list_models(self, request, context) -> pb.ListModelsResponse:
        self._attempt("ListModels", context)
        return pb.ListModelsResponse(models=[self._info()])

    @staticmethod
    def _info() -> pb.ModelInfo:
        return pb.ModelInfo(name="scripted", versions=["1"], sample_rate_hz=16_000)

    def get_model(self, request, context) -> pb.ModelInfo:
        self._attempt("GetModel", context)
        return self._info()

    def classify(self, request, context) -> pb.ClassifyResponse:
        self._attempt("Classify", context)
        return pb.ClassifyResponse(model_name="scripted")

    def stream_classify(self, requests, context) -> Iterator[pb.StreamClassifyResponse]:
        self._attempt("StreamClassify", context)
        # As Mozart's server does: say the config is accepted (AsyncClient waits for it).
        context.send_initial_metadata((("x-mozart-stream-accepted", "1"),))
        for request in requests:
            if request.HasField("config"):
                self.stream_configs.append(request.config)
            else:
                self.stream_audio_bytes += len(request.audio)
        yield pb.StreamClassifyResponse(is_final=True, summary=pb.Summary(window_count=0))

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        unary = grpc.unary_unary_rpc_method_handler
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ListModels": unary(
                    self.list_models,
                    request_deserializer=pb.ListModelsRequest.FromString,
                    response_serializer=pb.ListModelsResponse.SerializeToString,
                ),
                "GetModel": unary(
                    self.get_model,
                    request_deserializer=pb.GetModelRequest.FromString,
                    response_serializer=pb.ModelInfo.SerializeToString,
                ),
                "Classify": unary(
                    self.classify,
                    request_deserializer=pb.ClassifyRequest.FromString,
                    response_serializer=pb.ClassifyResponse.SerializeToString,
                ),
                "StreamClassify": grpc.stream_stream_rpc_method_handler(
                    self.stream_classify,
                    request_deserializer=pb.StreamClassifyRequest.FromString,
                    response_serializer=pb.StreamClassifyResponse.SerializeToString,
                ),
            },
        )


@pytest.fixture
def serve():
    servers: list[grpc.Server] = []

    def start(peer: ScriptedPeer) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((peer.handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(grace=None)


FAST_RETRY = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05)


def test_unary_calls_retry_unavailable_until_they_succeed(serve) -> None:
    peer = ScriptedPeer(failures=3, code=grpc.StatusCode.UNAVAILABLE)
    with Client(serve(peer), retry=FAST_RETRY) as client:
        models = client.models()
        result = client.classify(np.zeros(160, np.float32), sample_rate_hz=16_000, model="scripted")
    assert [m.name for m in models] == ["scripted"]
    assert result.model_name == "scripted"
    assert peer.attempts == {"ListModels": 4, "Classify": 4}


def test_retries_give_up_after_max_attempts_and_keep_the_status(serve) -> None:
    peer = ScriptedPeer(failures=10, code=grpc.StatusCode.UNAVAILABLE)
    with Client(serve(peer), retry=FAST_RETRY) as client, pytest.raises(UnavailableError) as caught:
        client.models()
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert "scripted failure 4" in caught.value.details
    assert peer.attempts["ListModels"] == 4


def test_other_statuses_are_not_retried(serve) -> None:
    peer = ScriptedPeer(failures=1, code=grpc.StatusCode.INVALID_ARGUMENT)
    with Client(serve(peer), retry=FAST_RETRY) as client, pytest.raises(InvalidInputError):
        client.models()
    assert peer.attempts["ListModels"] == 1


def test_streams_are_never_retried(serve) -> None:
    peer = ScriptedPeer(failures=1, code=grpc.StatusCode.UNAVAILABLE)
    with Client(serve(peer), retry=FAST_RETRY) as client, pytest.raises(UnavailableError):
        list(client.stream(np.zeros(1600, np.float32), sample_rate_hz=16_000, model="scripted"))
    assert peer.attempts["StreamClassify"] == 1


def test_retries_can_be_turned_off(serve) -> None:
    peer = ScriptedPeer(failures=1, code=grpc.StatusCode.UNAVAILABLE)
    with Client(serve(peer), retry=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(UnavailableError):
            client.models()
        assert client.models()[0].name == "scripted"
    assert peer.attempts["ListModels"] == 2


def test_every_call_has_a_deadline(serve) -> None:
    peer = ScriptedPeer(failures=0, code=grpc.StatusCode.OK, delay_s=0.5)
    with Client(serve(peer), timeout_s=0.1) as client:
        with pytest.raises(DeadlineExceededError) as caught:
            client.models()
        assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        # A per-call deadline overrides the client's default.
        assert client.models(timeout_s=5)[0].name == "scripted"


def test_the_token_travels_as_bearer_metadata(serve) -> None:
    peer = ScriptedPeer(failures=0, code=grpc.StatusCode.OK)
    with Client(serve(peer), token="s3cret") as client:
        client.models()
    assert peer.metadata[0]["authorization"] == "Bearer s3cret"


def test_async_client_retries_and_maps_errors_the_same_way(serve) -> None:
    target = serve(ScriptedPeer(failures=2, code=grpc.StatusCode.UNAVAILABLE))
    failing = serve(ScriptedPeer(failures=10, code=grpc.StatusCode.NOT_FOUND))

    async def scenario() -> tuple[str, grpc.StatusCode | None]:
        async with AsyncClient(target, retry=FAST_RETRY) as client:
            models = await client.models()
        async with AsyncClient(failing, retry=FAST_RETRY) as client:
            try:
                await client.models()
            except NotFoundError as error:
                return models[0].name, error.code
        return models[0].name, None

    assert asyncio.run(scenario()) == ("scripted", grpc.StatusCode.NOT_FOUND)


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        (grpc.StatusCode.UNAVAILABLE, UnavailableError),
        (grpc.StatusCode.UNAUTHENTICATED, UnauthenticatedError),
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidInputError),
        (grpc.StatusCode.OUT_OF_RANGE, OutOfRangeError),
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhaustedError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceededError),
        (grpc.StatusCode.INTERNAL, ServerError),
    ],
)
def test_each_status_becomes_its_sdk_error(serve, code, error_type) -> None:
    peer = ScriptedPeer(failures=1, code=code)
    client = Client(serve(peer), retry=RetryPolicy(max_attempts=1))
    with client, pytest.raises(error_type) as caught:
        client.models()
    assert caught.value.code == code
    assert caught.value.details == "scripted failure 1"
    assert isinstance(from_rpc_error(grpc.RpcError()), ServerError)


def test_timeout_none_takes_the_default_and_inf_means_no_deadline(serve) -> None:
    peer = ScriptedPeer(failures=0, code=grpc.StatusCode.OK)
    with Client(serve(peer), timeout_s=3) as client:
        client.models()  # None: the client's default
        client.models(timeout_s=math.inf)  # no deadline at all
        client.models(timeout_s=7)
    with Client(serve(peer), timeout_s=None) as client:
        client.models()  # a client without a default deadline
    first, forever, seven, no_default = peer.time_remaining
    assert first is not None
    assert 1 < first < 3.5
    # Without a deadline gRPC's sync server reports about 2**63 ns remaining.
    assert forever is not None
    assert forever > 1e9
    assert no_default is not None
    assert no_default > 1e9
    assert seven is not None
    assert 5 < seven < 7.5
    with pytest.raises(InvalidInputError, match="timeout_s must be positive"):
        Client(serve(peer), timeout_s=-1.0)


def test_every_call_sends_a_request_id_and_errors_keep_it(serve) -> None:
    peer = ScriptedPeer(failures=1, code=grpc.StatusCode.INTERNAL)
    with Client(serve(peer), retry=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(ServerError) as caught:
            client.models(request_id="mine-1")
        client.models()
    sent = [metadata["x-request-id"] for metadata in peer.metadata]
    assert sent[0] == "mine-1"
    assert re.fullmatch("[0-9a-f]{32}", sent[1])
    # This peer returns no trailing id: the error names the id the call was sent under.
    assert caught.value.request_id == "mine-1"
    with pytest.raises(InvalidInputError, match="printable ASCII"):
        Client(serve(peer)).models(request_id="bad\nid")


def test_async_client_sends_request_ids_the_same_way(serve) -> None:
    peer = ScriptedPeer(failures=1, code=grpc.StatusCode.INTERNAL)

    async def scenario() -> str:
        async with AsyncClient(serve(peer), retry=RetryPolicy(max_attempts=1)) as client:
            try:
                await client.models(request_id="mine-2")
            except ServerError as error:
                return error.request_id
        return ""

    assert asyncio.run(scenario()) == "mine-2"
    assert peer.metadata[0]["x-request-id"] == "mine-2"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_resample_on_client_sends_mono_float_at_the_models_rate(serve, kind) -> None:
    peer = ScriptedPeer(failures=0, code=grpc.StatusCode.OK)
    rate, seconds = 44_100, 2.0
    stereo = np.zeros((int(rate * seconds), 2), np.int16)
    stereo[:, 0] = (np.sin(np.arange(len(stereo)) / 20) * 8000).astype(np.int16)
    target = serve(peer)
    if kind == "sync":
        with Client(target) as client:
            list(client.stream(stereo, sample_rate_hz=rate, resample_on_client=True))
    else:

        async def scenario() -> None:
            async with AsyncClient(target) as client:
                stream = client.stream(stereo, sample_rate_hz=rate, resample_on_client=True)
                _ = [result async for result in stream]

        asyncio.run(scenario())
    (config,) = peer.stream_configs
    assert config.format == pb.AudioFormat(
        encoding=pb.AUDIO_ENCODING_PCM_F32LE, sample_rate_hz=16_000, channels=1
    )
    assert config.model.name == "scripted"
    assert peer.stream_audio_bytes == pytest.approx(seconds * 16_000 * 4, rel=1e-3)
