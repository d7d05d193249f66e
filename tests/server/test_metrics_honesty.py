"""Metrics say what happened: deadlines, cancels, unknown models; logs stay bounded."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_proto.inference import grpc_service_pb2_grpc as v2_grpc
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from tests.server.streams import audio_messages, config_message
from tests.support.audio import encode, music_clip
from tests.support.lifecycle import clip_request, rpc_error, wait_for
from tests.support.server import InProcessServer, running_server, spawned_server

S16 = pb.AUDIO_ENCODING_PCM_S16LE
DEFAULT_MODELS = Path(__file__).resolve().parents[2] / "models"
LONG_NAME = "m" * 20_000


def _model(name: str, version: str = "") -> pb.GetModelRequest:
    return pb.GetModelRequest(model=pb.ModelRef(name=name, version=version))


def _held(
    messages: list[pb.StreamClassifyRequest], release: threading.Event
) -> Iterator[pb.StreamClassifyRequest]:
    yield from messages
    release.wait(30)


def _connected(address: str) -> grpc.Channel:
    """A channel already connected, so that no call's deadline pays for the connection."""
    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=30)
    return channel


def test_a_stream_past_its_deadline_is_deadline_exceeded_not_cancelled(
    server: InProcessServer,
) -> None:
    release = threading.Event()
    audio = encode(music_clip(0.6, seed=3), 16_000, S16)
    before = server.metric("mozart_requests_total", method="StreamClassify", code="CANCELLED")
    with _connected(server.address) as channel:
        stub = pb_grpc.AudioClassifierStub(channel)
        messages = [config_message(), *audio_messages(audio, [4000])]
        error = rpc_error(lambda: list(stub.StreamClassify(_held(messages, release), timeout=1)))
        release.set()
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_for(
        lambda: (
            server.metric(
                "mozart_requests_total", method="StreamClassify", code="DEADLINE_EXCEEDED"
            )
            == 1
        )
    )
    assert server.metric("mozart_requests_total", method="StreamClassify", code="CANCELLED") == (
        before
    )


def test_a_cancel_just_before_the_deadline_counts_as_the_deadline(
    server: InProcessServer,
) -> None:
    # The client's library cancels at its own deadline, which is earlier than the server's
    # copy by the time the call's headers took; the server allows for it (DEADLINE_SLACK_S).
    release = threading.Event()
    counted = {"method": "StreamClassify", "code": "DEADLINE_EXCEEDED"}
    before = server.metric("mozart_requests_total", **counted)
    with _connected(server.address) as channel:
        stub = pb_grpc.AudioClassifierStub(channel)
        call = stub.StreamClassify(_held([config_message()], release), timeout=2)
        threading.Event().wait(2 - 0.03)
        call.cancel()
        release.set()
    assert wait_for(lambda: server.metric("mozart_requests_total", **counted) == before + 1)


def test_windows_dropped_at_their_deadline_count_as_deadline() -> None:
    # One session on one thread serves a long clip first: its 2,926 windows are queued at once
    # (the queue holds 4,096) and take seconds to compute whatever the machine. A short clip
    # asked meanwhile waits behind them; gRPC cancels it at its deadline, and the batcher,
    # reaching its windows later, drops them as past their deadline, not as cancelled.
    def clip(seconds: float, hop_ms: int, seed: int) -> pb.ClassifyRequest:
        return pb.ClassifyRequest(
            model=pb.ModelRef(name="composer-cnn"),
            format=pb.AudioFormat(encoding=S16, sample_rate_hz=16_000, channels=1),
            audio=encode(music_clip(seconds, seed=seed), 16_000, S16),
            hop_ms=hop_ms,
        )

    long_clip, short_clip = clip(120.0, 40, seed=5), clip(10.0, 110, seed=6)
    with (
        running_server(
            DEFAULT_MODELS,
            engine="fp32",
            instances=1,
            intra_op_threads=1,
            max_queue_windows=4096,
        ) as server,
        _connected(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        served = stub.Classify.future(long_clip, timeout=300)
        assert wait_for(lambda: server.metric("mozart_queue_depth") > 2_000, timeout_s=60)
        error = rpc_error(lambda: stub.Classify(short_clip, timeout=0.5))
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert server.metric("mozart_queue_depth") > 1_000  # the short clip's windows wait
        assert len(served.result().windows) == 2_926
        assert wait_for(lambda: server.metric("mozart_queue_depth") == 0)
        assert server.metric("mozart_requests_total", code="DEADLINE_EXCEEDED") == 1
        assert server.metric("mozart_requests_total", code="CANCELLED") == 0
        assert server.metric("mozart_windows_dropped_total", reason="deadline") == 64
        assert server.metric("mozart_windows_dropped_total", reason="cancelled") == 0


def test_a_client_that_cancels_is_counted_cancelled_not_invalid_argument(model_repository) -> None:
    audio = encode(music_clip(2.0, seed=4), 16_000, S16)
    streams = [[], [config_message()], [config_message(), *audio_messages(audio, [5000])]]
    with (
        running_server(model_repository) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        for messages in streams:
            release = threading.Event()
            call = stub.StreamClassify(_held(messages, release), timeout=30)
            # Cancel while the server waits for the stream's next message.
            assert wait_for(lambda: server.metric("mozart_active_streams") == 1)
            threading.Event().wait(0.3)
            call.cancel()
            release.set()
            assert wait_for(lambda: server.metric("mozart_active_streams") == 0)
        assert wait_for(
            lambda: (
                server.metric("mozart_requests_total", method="StreamClassify", code="CANCELLED")
                == len(streams)
            )
        )
        assert server.metric("mozart_requests_total", code="INVALID_ARGUMENT") == 0
        assert server.metric("mozart_requests_total", code="INTERNAL") == 0


def _label_values(server: InProcessServer, label: str) -> set[str]:
    return {
        sample.labels[label]
        for family in text_string_to_metric_families(server.scrape())
        for sample in family.samples
        if label in sample.labels
    }


def test_models_the_server_does_not_have_are_labelled_unknown(model_repository) -> None:
    with (
        running_server(model_repository) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        v2_stub = v2_grpc.GRPCInferenceServiceStub(channel)
        calls = [
            lambda: stub.Classify(clip_request(name=LONG_NAME), timeout=10),
            lambda: stub.GetModel(
                pb.GetModelRequest(model=pb.ModelRef(name=LONG_NAME)), timeout=10
            ),
            lambda: stub.LoadModel(pb.LoadModelRequest(name=LONG_NAME), timeout=10),
            lambda: stub.UnloadModel(pb.UnloadModelRequest(name="nope"), timeout=10),
            lambda: v2_stub.ModelMetadata(v2.ModelMetadataRequest(name=LONG_NAME), timeout=10),
        ]
        for call in calls:
            error = rpc_error(call)
            assert error.code() in {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}
            # The answer quotes the name, but not 20,000 characters of it.
            assert len(str(error.details())) < 2_100
        # A model the repository has keeps its name, even when the call is refused.
        refused = rpc_error(lambda: stub.LoadModel(pb.LoadModelRequest(name="tiny"), timeout=10))
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert wait_for(
            lambda: server.metric("mozart_requests_total", model="unknown") == len(calls)
        )
        assert wait_for(  # recorded once the status is sent, so just after the client has it
            lambda: server.metric("mozart_requests_total", method="LoadModel", model="tiny") == 1
        )
        assert _label_values(server, "model") <= {"", "tiny", "unknown"}


def test_names_clients_choose_are_clipped_in_the_log(model_repository) -> None:
    with spawned_server(model_repository) as server:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.AudioClassifierStub(channel)
            long_id = (("x-request-id", "r" * 5_000),)
            stream = [config_message(name=LONG_NAME)]
            calls = [
                lambda: stub.Classify(clip_request(name=LONG_NAME), timeout=10),
                lambda: stub.Classify(clip_request(name=LONG_NAME), metadata=long_id, timeout=10),
                lambda: stub.GetModel(_model(LONG_NAME), timeout=10),
                lambda: stub.GetModel(_model("tiny", version=LONG_NAME), timeout=10),
                lambda: stub.LoadModel(pb.LoadModelRequest(name=LONG_NAME), timeout=10),
                lambda: stub.UnloadModel(pb.UnloadModelRequest(name=LONG_NAME), timeout=10),
                lambda: list(stub.StreamClassify(iter(stream), timeout=10)),
            ]
            before = len(server.logs)
            for call in calls:
                rpc_error(call)
            assert wait_for(lambda: len(server.logs) >= before + len(calls))
        server.terminate()
        assert server.wait(30) == 0
    lines = [json.dumps(entry) for entry in server.logs[before:]]
    assert max(map(len, lines)) < 2_000
    assert sum(map(len, lines)) < 7 * 2_000
