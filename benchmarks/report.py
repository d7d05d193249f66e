"""A run's report.md and PNG plots, from its Summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display here or in CI

import matplotlib.pyplot as plt

from benchmarks.ceiling import format_ceiling
from benchmarks.gate import Thresholds, evaluate, format_checks
from benchmarks.results import PhaseResult, Summary

LATENCY_PLOT = "latency_vs_load.png"
THROUGHPUT_PLOT = "throughput_vs_ceiling.png"


def _latency_axis(axis: Any, phases: list[PhaseResult], xlabel: str, title: str) -> None:
    loads = [phase.users for phase in phases]
    for label, values in (
        ("median", [phase.latency.median_ms for phase in phases]),
        ("p90", [phase.latency.p90_ms for phase in phases]),
        ("p99", [phase.latency.p99_ms for phase in phases]),
    ):
        axis.plot(loads, values, marker="o", label=label)
    axis.set_xscale("log", base=2)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("latency (ms)")
    axis.set_title(title)
    axis.legend()
    axis.grid(True, alpha=0.3)


def plot(summary: Summary, folder: Path) -> None:
    """Writes latency percentiles against load, and throughput as a fraction of the ceiling."""
    sweeps = [
        (summary.phases_of("UnaryUser", "users-"), "concurrent Classify users", "Classify"),
        (summary.phases_of("V2User"), "concurrent ModelInfer users", "Triton v2 ModelInfer"),
        (summary.phases_of("StreamUser", "streams-"), "real-time streams", "stream window latency"),
    ]
    sweeps = [sweep for sweep in sweeps if sweep[0]]
    figure, axes = plt.subplots(1, len(sweeps), figsize=(5 * len(sweeps), 4), squeeze=False)
    for axis, (phases, xlabel, title) in zip(axes[0], sweeps, strict=True):
        _latency_axis(axis, phases, xlabel, title)
    figure.tight_layout()
    figure.savefig(folder / LATENCY_PLOT, dpi=100)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(6, 4))
    for phases, label in (
        (summary.phases_of("UnaryUser", "users-"), "Classify"),
        (summary.phases_of("V2User"), "ModelInfer"),
        (summary.phases_of("StreamUser", "streams-"), "streams"),
    ):
        if phases:
            fractions = [phase.windows_per_s / summary.ceiling.windows_per_s for phase in phases]
            axis.plot([phase.users for phase in phases], fractions, marker="o", label=label)
    axis.axhline(0.9, color="grey", linestyle="--", label="target 0.9")
    axis.set_xscale("log", base=2)
    axis.set_xlabel("users or streams")
    axis.set_ylabel("windows/s / ceiling")
    axis.set_title(f"throughput vs ceiling ({summary.ceiling.windows_per_s:.0f} windows/s)")
    axis.legend()
    axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(folder / THROUGHPUT_PLOT, dpi=100)
    plt.close(figure)


def _phase_table(summary: Summary) -> list[str]:
    lines = [
        "| phase | users | requests | failures | windows/s | / ceiling | median ms | p90 ms "
        "| p99 ms | mean batch | mean queue ms | mean compute ms | server RPC ms | server CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase in summary.phases:
        cpu = "n/a" if phase.server.cpu_s is None else f"{phase.server.cpu_s:.1f}"
        lines.append(
            f"| {phase.name} ({phase.user_class}) | {phase.users} | {phase.requests} | "
            f"{phase.failures} | {phase.windows_per_s:.1f} | "
            f"{phase.windows_per_s / summary.ceiling.windows_per_s:.3f} | "
            f"{phase.latency.median_ms:.2f} | {phase.latency.p90_ms:.2f} | "
            f"{phase.latency.p99_ms:.2f} | {phase.server.mean_batch_size:.2f} | "
            f"{phase.server.mean_queue_ms:.2f} | {phase.server.mean_compute_ms:.2f} | "
            f"{phase.server.mean_request_ms:.2f} | {cpu} |"
        )
    return lines


def write_report(
    summary: Summary, folder: Path, gate: Thresholds, targets: Thresholds
) -> tuple[str, str]:
    """Writes report.md and the plots; returns the gate and target tables as text."""
    plot(summary, folder)
    gate_table = format_checks(evaluate(summary, gate), "gate (benchmarks/gates.toml [gate])")
    targets_table = format_checks(
        evaluate(summary, targets), "product targets (benchmarks/gates.toml [targets])"
    )
    sustained = summary.sustained_streams(targets.max_stream_p99_ms)
    errors = sorted({error for phase in summary.phases for error in phase.errors})
    lines = [
        f"# Benchmark run {summary.started_at} ({summary.profile})",
        "",
        f"Model `{summary.model}` v{summary.ceiling.version}, clips `{summary.clips}`, "
        f"hop {summary.hop_ms} ms, {summary.cpu_count} CPUs{_pinning(summary)}. Server settings: "
        f"`{summary.server_settings or 'defaults'}`. Figures are ratios within this run: "
        "the machine is shared and absolute times do not carry over.",
        "",
        "## Ceiling (in-process ONNX Runtime, the server's engine settings)",
        "",
        "```",
        format_ceiling(summary.ceiling),
        "```",
        "",
        "## Gates",
        "",
        "```",
        gate_table,
        "",
        targets_table,
        "```",
        "",
        f"Real-time streams sustained at p99 <= {targets.max_stream_p99_ms:g} ms: "
        f"**{sustained}** of the stream counts run; the ceiling's count is "
        f"**{summary.ceiling_streams:.0f}** ({summary.ceiling.windows_per_s:.0f} windows/s / "
        f"{summary.windows_per_stream_s:.2f} windows/s per stream).",
        "",
        "## Phases",
        "",
        *_phase_table(summary),
        "",
        f"![latency]({LATENCY_PLOT})",
        "",
        f"![throughput]({THROUGHPUT_PLOT})",
        "",
    ]
    if errors:
        lines += ["## Failures", "", *[f"- `{error}`" for error in errors], ""]
    (folder / "report.md").write_text("\n".join(lines))
    return gate_table, targets_table


def _pinning(summary: Summary) -> str:
    if not summary.server_cpus:
        return " (server, ceiling and Locust unpinned, sharing them)"
    load = f"Locust to {summary.load_cpus}" if summary.load_cpus else "Locust unpinned"
    return f" (server and ceiling pinned to CPUs {summary.server_cpus}, {load})"
