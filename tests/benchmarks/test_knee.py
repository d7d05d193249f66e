"""The stream knee: where the ramp stops, what it reports, and the MAC count of a graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from benchmarks.ceiling import BatchMeasurement, Ceiling
from benchmarks.heavy_model import HeavySpec, count_macs
from benchmarks.knee import Knee, KneeStep, knee_table, load_processes, plot_knees, ramp, refine
from benchmarks.results import Summary, server_delta

BOUND = 100.0


def _step(streams: int, p99_ms: float, failures: int = 0) -> KneeStep:
    return KneeStep(streams, 20.0, 20 * streams, failures, p99_ms / 3, p99_ms, streams, 1,
                    10.0, 30.0)  # fmt: skip


def _knee(*steps: KneeStep) -> Knee:
    return Knee("m", BOUND, 1000, steps, ceiling_streams=400.0)


def test_the_knee_is_the_largest_count_that_held_below_the_first_crossing() -> None:
    knee = _knee(_step(25, 10), _step(50, 20), _step(100, 150), _step(75, 60))
    assert (knee.knee, knee.crossed_at) == (75, 100)
    # A count above the first crossing that happened to hold does not raise the knee.
    assert _knee(_step(50, 20), _step(100, 150), _step(150, 90)).knee == 50
    # A failure crosses the bound whatever the latency.
    assert _knee(_step(25, 10), _step(50, 20, failures=1)).knee == 25
    never = _knee(_step(25, 10), _step(50, 20))
    assert (never.knee, never.crossed_at) == (50, None)
    assert "never crossed it" in never.describe()


def test_the_ramp_stops_at_the_first_crossing_and_refines_once() -> None:
    latency = {25: 10.0, 50: 20.0, 100: 40.0, 150: 300.0, 120: 80.0}
    ran: list[int] = []

    def measure(streams: int) -> KneeStep:
        ran.append(streams)
        return _step(streams, latency[streams])

    steps = ramp(measure, BOUND, (25, 50, 100, 150, 200, 250), say=lambda _: None)
    assert ran == [25, 50, 100, 150, 120]
    assert _knee(*steps).knee == 120


@pytest.mark.parametrize(
    ("held", "crossed", "middle"), [(100, 150, 120), (25, 50, 40), (0, 25, 10), (40, 45, None)]
)
def test_refine_halves_the_gap_on_a_round_count(
    held: int, crossed: int, middle: int | None
) -> None:
    assert refine(held, crossed) == middle


def test_streams_are_split_over_load_processes() -> None:
    assert [load_processes(n, 100) for n in (1, 100, 101, 350)] == [1, 1, 2, 4]


def test_the_knee_survives_summary_json_and_is_plotted(tmp_path: Path) -> None:
    knee = _knee(_step(25, 10), _step(50, 150), _step(35, 40))
    ceiling = Ceiling("m", "1", 48_000, 16_000, 1, 1, (BatchMeasurement(1, 400, 2.5, 3.0, 9),))
    summary = Summary("t", "knee", "m", "c", 1000, {}, 2, ceiling, (), knee=knee)
    summary.write(tmp_path / "summary.json")
    read = Summary.read(tmp_path / "summary.json")
    assert read.knee == knee
    assert read.knee is not None
    assert read.knee.knee == 35
    table = knee_table(knee)
    assert [line.split(" | ")[0] for line in table[2:]] == ["| 25", "| 35", "| 50"]
    assert "| 0.50 (1) |" in table[2]  # Locust's cores (10 CPU s in 20 s), 1 process
    plot_knees([knee, knee], tmp_path / "knee.png")
    assert (tmp_path / "knee.png").stat().st_size > 0


def test_macs_are_counted_from_conv_and_matmul_shapes(tmp_path: Path) -> None:
    """A 1-D conv (the STFT's shape), a 2-D conv and a MatMul, each with a known count."""
    rng = np.random.default_rng(0)
    weights: dict[str, np.ndarray] = {
        "stft": rng.standard_normal((6, 1, 8)).astype(np.float32),  # 6 out, kernel 8
        "conv": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
        "dense": rng.standard_normal((4 * 6 * 9, 5)).astype(np.float32),
        "shape": np.array([1, 1, 6, 9], np.int64),
        "flat": np.array([-1, 4 * 6 * 9], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "stft"], ["spectrum"], strides=[4]),  # [b, 6, 9]
        helper.make_node("Reshape", ["spectrum", "shape"], ["image"]),
        helper.make_node("Conv", ["image", "conv"], ["features"], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["features", "flat"], ["flat_features"]),
        helper.make_node("MatMul", ["flat_features", "dense"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 40])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])],
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    macs = count_macs(path)
    stft = 6 * 9 * 8  # outputs x kernel
    conv = 4 * 6 * 9 * 9
    dense = 5 * 4 * 6 * 9
    assert (macs.stft, macs.front_end, macs.total) == (stft, stft, stft + conv + dense)


def test_the_heavy_models_spec_is_the_issues_shape() -> None:
    spec = HeavySpec()
    frames = 1 + (spec.window_samples - spec.n_fft) // spec.stft_hop
    stft_macs = frames * 2 * (spec.n_fft // 2 + 1) * spec.n_fft
    assert 75e6 < stft_macs < 80e6  # "the STFT front end is about 78 M"
    assert spec.default_hop_ms == 1000
    assert HeavySpec(channels=(8,)).digest() != spec.digest()


def test_the_servers_own_window_latency_is_read_from_its_histogram_buckets() -> None:
    name = "mozart_stream_window_latency_seconds_bucket"
    before = {f'{name}{{le="0.05"}}': 10.0, f'{name}{{le="0.1"}}': 10.0,
              f'{name}{{le="+Inf"}}': 10.0}  # fmt: skip
    after = {f'{name}{{le="0.05"}}': 100.0, f'{name}{{le="0.1"}}': 208.0,
             f'{name}{{le="+Inf"}}': 210.0}  # fmt: skip
    delta = server_delta(before, after, None)
    assert delta.stream_window_buckets == {"0.05": 90.0, "0.1": 198.0, "+Inf": 200.0}
    assert delta.share_of_stream_windows_within(100.0) == pytest.approx(0.99)
    assert delta.share_of_stream_windows_within(75.0) == pytest.approx(0.45)  # the 50 ms bound
    assert delta.share_of_stream_windows_within(10.0) is None  # no bucket that low
    assert server_delta({}, {}, None).share_of_stream_windows_within(100.0) is None
