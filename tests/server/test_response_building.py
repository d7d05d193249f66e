"""The bulk paths of response building, PCM conversion and request metrics give what the
per-element ones gave: the top k in order with ties in label order, at every label count;
PCM samples scaled exactly; cached metric children that count in the metric."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter

from mozart_server.api.v1 import conversion
from mozart_server.audio.decode import Encoding, pcm_to_float
from mozart_server.observability.metrics import LabelCache


def _reference_top_k(labels: list[str], scores: np.ndarray, k: int) -> list[tuple[str, float]]:
    order = np.argsort(-scores, kind="stable")[:k]
    return [(labels[i], float(scores[i])) for i in order]


@pytest.mark.parametrize("label_count", [1, 6, 63, 64, 65, 527])
def test_top_k_is_best_first_with_ties_in_label_order(label_count: int) -> None:
    rng = np.random.default_rng(label_count)
    labels = [f"label-{i}" for i in range(label_count)]
    for trial in range(50):
        scores = rng.random(label_count).astype(np.float32)
        if trial % 2:  # coarse values: many ties, also at the k-th place
            scores = (np.round(scores * 4) / 4).astype(np.float32)
        for k in (0, 1, 3, label_count - 1, label_count, label_count + 2):
            got = [(s.label, s.score) for s in conversion.top_k_scores(labels, scores, k)]
            assert got == _reference_top_k(labels, scores, max(k, 0))


@pytest.mark.parametrize("channels", [1, 2])
def test_s16le_converts_exactly_to_writable_float32(channels: int) -> None:
    samples = np.arange(-32768, 32768, 7, dtype="<i2")[: 4096 * channels]
    converted = pcm_to_float(samples.tobytes(), Encoding.PCM_S16LE, channels)
    expected = (samples.astype(np.float32) / np.float32(32768.0)).reshape(-1, channels)
    assert converted.dtype == np.float32
    assert converted.flags.c_contiguous
    assert converted.flags.writeable
    np.testing.assert_array_equal(converted, expected.mean(axis=1, dtype=np.float32))


def test_label_cache_counts_in_the_metric_and_stops_caching_at_its_bound() -> None:
    registry = CollectorRegistry()
    counter = Counter("calls", "calls", ["method", "code"], registry=registry)
    cache = LabelCache(counter, max_children=2)
    assert cache.get("Classify", "OK") is cache.get("Classify", "OK")
    cache.get("Classify", "OK").inc(3)
    for code in ("A", "B", "C"):  # past the bound: still counted, looked up each time
        cache.get("Classify", code).inc()
        cache.get("Classify", code).inc()
    assert registry.get_sample_value("calls_total", {"method": "Classify", "code": "OK"}) == 3
    for code in ("A", "B", "C"):
        assert registry.get_sample_value("calls_total", {"method": "Classify", "code": code}) == 2
