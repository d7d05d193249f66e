"""The dynamic batcher on the real ONNX Runtime engine: each caller gets its own rows."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from mozart_server.batching.batcher import BatcherConfig, DynamicBatcher
from mozart_server.engines.onnx import OnnxEngine
from mozart_server.errors import DeadlineExceededError, ResourceExhaustedError
from mozart_server.observability.metrics import ServerMetrics
from mozart_server.settings import OnnxSettings
from tests.support.audio import music_clip

WINDOW = 8_000


@pytest.fixture(scope="module")
def engine(model_repository: Path) -> OnnxEngine:
    return OnnxEngine(model_repository / "tiny" / "1" / "model.onnx", OnnxSettings(instances=2))


def make_batcher(engine, **knobs) -> DynamicBatcher:
    config = BatcherConfig(
        max_batch_size=knobs.get("max_batch_size", 8),
        max_queue_delay_us=knobs.get("max_queue_delay_us", 0),
        preferred_batch_sizes=(4, 8),
        max_queue_windows=knobs.get("max_queue_windows", 1024),
    )
    return DynamicBatcher(engine, config, ServerMetrics(CollectorRegistry()), "tiny", "1")


def windows(rows: int, seed: int) -> np.ndarray:
    clip = music_clip(rows * WINDOW / 16_000, seed=seed)
    return clip[: rows * WINDOW].reshape(rows, WINDOW)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    sizes=st.lists(st.integers(1, 20), min_size=1, max_size=12),
    cancelled=st.sets(st.integers(0, 11)),
    delay_us=st.sampled_from([0, 500]),
)
def test_each_caller_gets_its_own_rows_even_when_others_cancel(
    engine, sizes, cancelled, delay_us
) -> None:
    inputs = [windows(size, seed) for seed, size in enumerate(sizes)]
    expected = [engine.run(batch).probabilities for batch in inputs]

    async def scenario():
        batcher = make_batcher(engine, max_queue_delay_us=delay_us)
        batcher.start()
        tasks = [asyncio.create_task(batcher.submit(batch)) for batch in inputs]
        await asyncio.sleep(0)
        for index in cancelled:
            if index < len(tasks):
                tasks[index].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.aclose()
        return results, batcher.queued_windows

    results, left_queued = asyncio.run(scenario())
    assert left_queued == 0
    for index, result in enumerate(results):
        if isinstance(result, asyncio.CancelledError):
            assert index in cancelled
            continue
        assert not isinstance(result, BaseException), result
        np.testing.assert_allclose(result.outputs.probabilities, expected[index], atol=1e-5)
        assert result.outputs.embedding.shape[0] == sizes[index]


def test_a_full_queue_refuses_at_once(engine) -> None:
    async def scenario():
        batcher = make_batcher(engine, max_queue_windows=4)  # not started: nothing drains
        with pytest.raises(ResourceExhaustedError, match="full"):
            await batcher.submit(windows(5, 0))
        await batcher.aclose()

    asyncio.run(scenario())


def test_expired_work_is_dropped_before_compute(engine) -> None:
    async def scenario():
        batcher = make_batcher(engine)
        queued = asyncio.create_task(batcher.submit(windows(2, 1), time.monotonic() + 0.01))
        await asyncio.sleep(0.05)  # expires in the queue: the batcher is not started yet
        batcher.start()
        with pytest.raises(DeadlineExceededError):
            await queued
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(windows(1, 2), time.monotonic() - 1)
        await batcher.aclose()

    asyncio.run(scenario())


def test_every_metric_is_documented() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "server.md").read_text()
    registry = CollectorRegistry()
    ServerMetrics(registry)
    names = {metric.name for metric in registry.collect()}
    documented = set(re.findall(r"`(mozart_[a-z_]+)`", docs))
    for name in names:
        assert {name, f"{name}_total", f"{name}_info"} & documented, (
            f"{name} is not in docs/server.md"
        )
