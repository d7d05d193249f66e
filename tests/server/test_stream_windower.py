"""The stream windower's buffer (written in place, compacted, grown for a big chunk) cuts
exactly the windows `windowing.cut_windows` cuts from the whole clip, however the stream
is chunked, resampled or not."""

from __future__ import annotations

import itertools

import numpy as np
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from mozart_server.audio.stream import StreamWindower, Window
from mozart_server.audio.windowing import cut_windows


def _chunks(total: int, cuts: list[int]) -> list[tuple[int, int]]:
    edges = sorted({0, total, *(cut % (total + 1) for cut in cuts)})
    return list(itertools.pairwise(edges))


def _stream(windower: StreamWindower, clip: np.ndarray, cuts: list[int]) -> list[Window]:
    windows: list[Window] = []
    for start, end in _chunks(len(clip), cuts):
        windows.extend(windower.push(clip[start:end]))
    windows.extend(windower.finish())
    return windows


def _check(windows: list[Window], expected: np.ndarray, hop: int) -> None:
    assert [w.index for w in windows] == list(range(len(expected)))
    assert [w.start_sample for w in windows] == [i * hop for i in range(len(expected))]
    for window, row in zip(windows, expected, strict=True):
        np.testing.assert_array_equal(window.samples, row)


@settings(max_examples=60, deadline=None)
@given(
    total=st.integers(1, 1200),
    window=st.integers(1, 200),
    hop=st.integers(1, 300),
    cuts=st.lists(st.integers(0, 10_000), max_size=40),
    seed=st.integers(0, 2**16),
)
def test_windows_match_cut_windows_at_the_model_rate(
    total: int, window: int, hop: int, cuts: list[int], seed: int
) -> None:
    clip = np.random.default_rng(seed).standard_normal(total).astype(np.float32)
    windows = _stream(StreamWindower(16_000, 16_000, window, hop), clip, cuts)
    _check(windows, cut_windows(clip, window, hop), hop)


@settings(max_examples=20, deadline=None)
@given(
    total=st.integers(1, 3000),
    window=st.integers(50, 400),
    hop=st.integers(1, 400),
    cuts=st.lists(st.integers(0, 10_000), max_size=20),
    rate=st.sampled_from([8_000, 22_050, 44_100]),
)
def test_resampled_windows_match_cut_windows_of_the_resampled_stream(
    total: int, window: int, hop: int, cuts: list[int], rate: int
) -> None:
    clip = np.random.default_rng(total).standard_normal(total).astype(np.float32)
    windows = _stream(StreamWindower(rate, 16_000, window, hop), clip, cuts)
    # The same chunks through a resampler of their own, joined, cut as a whole clip.
    resampler = soxr.ResampleStream(rate, 16_000, 1, dtype="float32")
    parts = [resampler.resample_chunk(clip[a:b]) for a, b in _chunks(total, cuts)]
    parts.append(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    resampled = np.concatenate([np.asarray(p, dtype=np.float32) for p in parts])
    _check(windows, cut_windows(resampled, window, hop), hop)


def test_memory_stays_bounded_over_a_long_stream() -> None:
    windower = StreamWindower(16_000, 16_000, 48_000, 16_000)
    chunk = np.ones(1_600, dtype=np.float32)
    count = sum(len(windower.push(chunk)) for _ in range(2_000))  # 200 s
    assert count == (2_000 * 1_600 - 48_000) // 16_000 + 1
    assert len(windower._buffer) == 2 * 48_000 + 16_000  # never grew for 100 ms chunks
