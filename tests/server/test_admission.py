"""Admission before work: hops, window counts, call caps and queue room are checked before
decoding or queueing; long clips go in slices; a refused or cancelled call computes nothing.

Windows computed are read from `mozart_batch_size_sum` (every window the engine ran), so
"nothing computed" is a count, not a timing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from mozart_proto.inference import grpc_service_pb2 as v2
from mozart_proto.inference import grpc_service_pb2_grpc as v2_grpc
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc
from mozart_server.api.v1 import conversion
from mozart_server.batching.batcher import BatcherConfig, DynamicBatcher
from mozart_server.engines.onnx import OnnxEngine
from mozart_server.errors import ResourceExhaustedError
from mozart_server.inference.clips import ClipClassifier, ClipRequest
from mozart_server.models.manifest import read_manifest
from mozart_server.models.registry import ModelRegistry, ServingVersion
from mozart_server.models.repository import VersionDir
from mozart_server.observability.metrics import ServerMetrics
from mozart_server.settings import AdmissionSettings, OnnxSettings, StreamSettings
from tests.support.audio import encode, music_clip
from tests.support.lifecycle import rpc_error
from tests.support.server import InProcessServer, running_server

RATE = 16_000
WINDOW = 8_000  # the test model: 0.5 s windows, default hop 250 ms
S16 = pb.AUDIO_ENCODING_PCM_S16LE
TIMEOUT_S = 60


def s16_request(seconds: float, hop_ms: int = 0, seed: int = 0) -> pb.ClassifyRequest:
    audio = encode(music_clip(seconds, RATE, seed=seed), RATE, S16)
    return pb.ClassifyRequest(
        model=pb.ModelRef(name="tiny"),
        format=pb.AudioFormat(encoding=S16, sample_rate_hz=RATE, channels=1),
        audio=audio,
        hop_ms=hop_ms,
    )


def computed(server: InProcessServer) -> float:
    """Windows the engine has run so far (every batch's size, summed)."""
    return server.metric("mozart_batch_size_sum")


def test_a_tiny_hop_is_refused_before_decoding(model_repository: Path) -> None:
    # Before: hop_ms=1 cut 1,001 windows of a 4 s clip (and INTERNAL for 10 minutes).
    with (
        running_server(model_repository) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        for seconds in (4.0, 600.0):
            request = s16_request(seconds, hop_ms=1)
            error = rpc_error(lambda: stub.Classify(request, timeout=TIMEOUT_S))  # noqa: B023
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "smallest hop" in str(error.details())
        assert server.metric("mozart_calls_refused_early_total", reason="hop") == 2
        assert computed(server) == 0
        assert server.metric("mozart_audio_processed_seconds_total") == 0  # nothing decoded


def test_too_many_windows_are_out_of_range_before_decoding(model_repository: Path) -> None:
    with (
        running_server(model_repository, max_windows_per_request=100) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        error = rpc_error(lambda: stub.Classify(s16_request(60.0), timeout=TIMEOUT_S))
        assert error.code() == grpc.StatusCode.OUT_OF_RANGE
        assert "max_windows_per_request" in str(error.details())
        assert "stream it" in str(error.details())
        assert computed(server) == 0
        assert server.metric("mozart_audio_processed_seconds_total") == 0
        # A clip under the limit is fine.
        assert len(stub.Classify(s16_request(10.0), timeout=TIMEOUT_S).windows) == 39


def test_a_clip_longer_than_the_queue_is_answered_in_slices(model_repository: Path) -> None:
    # Before: 2,399 windows against a 1,024-window queue were RESOURCE_EXHAUSTED on an idle
    # server, after computing 1,024 of them ("retry with backoff" could never succeed).
    with (
        running_server(model_repository, max_queue_windows=256) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.AudioClassifierStub(channel)
        request = s16_request(600.0)
        response = stub.Classify(request, timeout=120)
        assert len(response.windows) == (600 * RATE - WINDOW) // (RATE // 4) + 1 == 2399
        assert [w.index for w in response.windows] == list(range(2399))
        assert computed(server) == 2399
        # Sliced scores equal those of the same windows classified in one piece.
        short = stub.Classify(
            pb.ClassifyRequest(
                model=request.model, format=request.format, audio=request.audio[: 10 * RATE * 2]
            ),
            timeout=TIMEOUT_S,
        )
        for sliced, whole in zip(response.windows[:39], short.windows, strict=True):
            np.testing.assert_allclose(sliced.scores, whole.scores, atol=1e-5)


def test_a_full_queue_refuses_before_decoding_and_computes_nothing_for_it(
    model_repository: Path,
) -> None:
    # The inference layer on a real engine and registry, with a batcher that is not started,
    # so the queue stays as full as the first call left it.
    async def scenario() -> None:
        metrics = ServerMetrics(CollectorRegistry())
        version_dir = VersionDir("tiny", "1", model_repository / "tiny" / "1")
        manifest = read_manifest(version_dir)
        engine = OnnxEngine(version_dir.path / "model.onnx", OnnxSettings())
        config = BatcherConfig(1, 0, (1,), max_queue_windows=64)
        batcher = DynamicBatcher(engine, config, metrics, "tiny", "1")
        registry = ModelRegistry(metrics)
        registry.swap("tiny", [ServingVersion(manifest, engine, batcher)])
        clips = ClipClassifier(registry, StreamSettings(), AdmissionSettings(), metrics)
        first = asyncio.ensure_future(clips.classify(clip(s16_request(15.0)), None))
        for _ in range(500):  # decoding runs in a worker thread: wait until it queued
            if batcher.queued_windows:
                break
            await asyncio.sleep(0.01)
        assert batcher.queued_windows == 59
        with pytest.raises(ResourceExhaustedError, match="no room for 39"):
            await clips.classify(clip(s16_request(10.0, seed=1)), None)
        assert batcher.queued_windows == 59  # nothing of the refused call was queued
        refused = metrics.registry.get_sample_value(
            "mozart_calls_refused_early_total", {"reason": "queue_full"}
        )
        assert refused == 1
        decoded = metrics.registry.get_sample_value(
            "mozart_audio_processed_seconds_total", {"method": "Classify"}
        )
        assert decoded == 15.0  # only the first call's audio was decoded
        batcher.start()
        result = await first
        assert len(result.windows) == 59
        assert batcher.statistics.windows == 59  # and only its windows were computed
        await registry.aclose()

    asyncio.run(scenario())


def clip(request: pb.ClassifyRequest) -> ClipRequest:
    return conversion.clip_request(request)


def test_the_cap_on_calls_in_flight_refuses_at_once(model_repository: Path) -> None:
    # Before: nothing capped unary calls in flight; refusals came after receive and decode.
    with running_server(
        model_repository, max_unary_calls_in_flight=2, max_batch_size=1,
        preferred_batch_sizes="1",
    ) as server:  # fmt: skip

        async def burst() -> list[grpc.StatusCode]:
            async with grpc.aio.insecure_channel(server.address) as channel:
                stub = pb_grpc.AudioClassifierStub(channel)
                request = s16_request(5.0)

                async def one() -> grpc.StatusCode:
                    try:
                        await stub.Classify(request, timeout=TIMEOUT_S)
                    except grpc.aio.AioRpcError as error:
                        return error.code()
                    return grpc.StatusCode.OK

                return await asyncio.gather(*(one() for _ in range(12)))

        codes = asyncio.run(burst())
        assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
        refused = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert (
            server.metric("mozart_calls_refused_early_total", reason="calls_in_flight") == refused
        )
        assert computed(server) == codes.count(grpc.StatusCode.OK) * 19


def test_v2_infer_larger_than_the_queue_is_out_of_range(model_repository: Path) -> None:
    with (
        running_server(model_repository, max_queue_windows=8) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        rows = 9
        waveforms = np.zeros((rows, WINDOW), "<f4")
        request = v2.ModelInferRequest(
            model_name="tiny",
            inputs=[v2.ModelInferRequest.InferInputTensor(
                name="waveform", datatype="FP32", shape=[rows, WINDOW])],
            raw_input_contents=[waveforms.tobytes()],
        )  # fmt: skip
        error = rpc_error(lambda: stub.ModelInfer(request, timeout=TIMEOUT_S))
        assert error.code() == grpc.StatusCode.OUT_OF_RANGE
        assert "max_queue_windows" in str(error.details())
        assert computed(server) == 0


@pytest.fixture(scope="module")
def engine(model_repository: Path) -> OnnxEngine:
    return OnnxEngine(model_repository / "tiny" / "1" / "model.onnx", OnnxSettings())


def test_the_batcher_queues_all_of_a_call_or_none_of_it(engine: OnnxEngine) -> None:
    async def scenario() -> None:
        config = BatcherConfig(
            max_batch_size=2, max_queue_delay_us=0, preferred_batch_sizes=(2,),
            max_queue_windows=6,
        )  # fmt: skip
        batcher = DynamicBatcher(engine, config, ServerMetrics(CollectorRegistry()), "tiny", "1")
        first = asyncio.ensure_future(batcher.submit(np.zeros((4, WINDOW), np.float32)))
        await asyncio.sleep(0)
        assert batcher.queued_windows == 4
        with pytest.raises(ResourceExhaustedError, match="no room for 3"):
            await batcher.submit(np.zeros((3, WINDOW), np.float32))
        assert batcher.queued_windows == 4  # none of the refused call's parts was queued
        first.cancel()
        batcher.start()  # the collector drops the cancelled parts
        await asyncio.sleep(0.05)
        assert batcher.queued_windows == 0
        assert batcher.statistics.windows == 0
        await batcher.aclose()

    asyncio.run(scenario())


def test_room_reserved_while_decoding_is_not_given_to_another_call(engine: OnnxEngine) -> None:
    async def scenario() -> None:
        config = BatcherConfig(1, 0, (1,), max_queue_windows=10)
        batcher = DynamicBatcher(engine, config, ServerMetrics(CollectorRegistry()), "tiny", "1")
        with batcher.reservation(8) as reserved:
            assert not batcher.has_room(3)
            with pytest.raises(ResourceExhaustedError):
                await batcher.submit(np.zeros((3, WINDOW), np.float32))
            queued = asyncio.ensure_future(
                batcher.submit(np.zeros((8, WINDOW), np.float32), None, reserved)
            )
            await asyncio.sleep(0)
            assert batcher.queued_windows == 8
            assert reserved.rows == 0  # used up by the submission
        assert batcher.has_room(2)
        assert not batcher.has_room(3)
        batcher.start()
        assert (await queued).outputs.probabilities.shape == (8, 4)
        with batcher.reservation(10):
            pass  # given back unused
        assert batcher.has_room(10)
        await batcher.aclose()

    asyncio.run(scenario())
