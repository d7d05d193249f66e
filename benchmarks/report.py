"""A run's report.md and PNG plots, from its Summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display here or in CI

import matplotlib.pyplot as plt

from benchmarks.ceiling import describe_engine, format_ceiling
from benchmarks.compare import Comparison
from benchmarks.gate import Thresholds, evaluate, format_checks
from benchmarks.knee import knee_table, plot_knees
from benchmarks.results import PhaseResult, Summary

LATENCY_PLOT = "latency_vs_load.png"
THROUGHPUT_PLOT = "throughput_vs_ceiling.png"
KNEE_PLOT = "stream_knee.png"


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
    if summary.knee is not None:
        plot_knees([summary.knee], folder / KNEE_PLOT)
    if not sweeps:  # a knee-only run
        return
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
        f"Engine `{summary.engine_choice or 'auto'}`: {_served(summary)}.",
        "",
        "## Ceiling (in-process, the server's engine and its settings)",
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
    if summary.knee is not None:
        lines += [
            "## Stream knee",
            "",
            summary.knee.describe() + ".",
            "",
            *knee_table(summary.knee),
            "",
            f"![knee]({KNEE_PLOT})",
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


def _served(summary: Summary) -> str:
    measured = describe_engine(summary.ceiling)
    if not summary.server_artifact:
        return f"the ceiling measured {measured}; the server's log did not name its artifact"
    if summary.server_artifact == summary.ceiling.artifact:
        return f'{measured}, in the ceiling and in the server (its log\'s "engine chosen")'
    return f"the ceiling measured {measured}, the server served `{summary.server_artifact}`"


def _ratio_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def comparison_tables(comparison: Comparison) -> list[str]:
    """The engines, their ceilings and every phase side by side, with ratios to the first."""
    figures, ratios = comparison.figures, comparison.ratios
    engines = [engine.engine for engine in figures]
    over = [f"{ratios.engine} / {ratios.baseline}" for ratios in ratios]
    lines = [
        "| engine | artifact | precision | kind | device | instances | intra-op threads "
        "| server served |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for engine in figures:
        threads = "n/a" if engine.intra_op_threads is None else str(engine.intra_op_threads)
        lines.append(
            _row([engine.engine, f"`{engine.artifact}`", engine.precision, engine.engine_kind,
                  engine.device, str(engine.instances), threads,
                  f"`{engine.server_artifact}`" if engine.server_artifact else "not logged"])
        )  # fmt: skip
    lines += [
        "",
        _row(["ceiling", *engines, *over]),
        "|---" * (1 + len(engines) + len(over)) + "|",
        _row(["windows/s (best batch size)",
              *[f"{e.ceiling_windows_per_s:.1f} (batch {e.ceiling_best_batch_size})"
                for e in figures],
              *[_ratio_text(r.ceiling_windows_per_s) for r in ratios]]),
        _row(["batch-1 median ms", *[f"{e.batch1_median_ms:.2f}" for e in figures],
              *[_ratio_text(r.batch1_median_ms) for r in ratios]]),
        "",
        _row(["phase", *[f"{e} windows/s" for e in engines], *over,
              *[f"{e} median ms" for e in engines], *over]),
        "|---" * (1 + 2 * (len(engines) + len(over))) + "|",
    ]  # fmt: skip
    for number, phase in enumerate(figures[0].phases):
        lines.append(
            _row([phase.name,
                  *[f"{e.phases[number].windows_per_s:.1f}" for e in figures],
                  *[_ratio_text(r.phases[number].windows_per_s) for r in ratios],
                  *[f"{e.phases[number].median_ms:.2f}" for e in figures],
                  *[_ratio_text(r.phases[number].median_ms) for r in ratios]])
        )  # fmt: skip
    return lines


def write_comparison_report(comparison: Comparison, folder: Path, gate: Thresholds) -> str:
    """Writes the run's report.md with every engine side by side; returns the gate tables."""
    first = comparison.summaries[0]
    engines = [summary.engine_choice for summary in comparison.summaries]
    gate_tables = "\n\n".join(
        format_checks(evaluate(summary, gate), f"gate for {summary.engine_choice}")
        for summary in comparison.summaries
    )
    others = {name: value for name, value in first.server_settings.items() if name != "engine"}
    lines = [
        f"# Benchmark run {first.started_at} ({first.profile}): {', '.join(engines)} side by side",
        "",
        f"Model `{first.model}` v{first.ceiling.version}, clips `{first.clips}`, "
        f"hop {first.hop_ms} ms, {first.cpu_count} CPUs{_pinning(first)}. Server settings "
        f"besides `engine`: `{others or 'defaults'}`.",
        "",
        "Each engine's ceiling was measured before the first server started and again after "
        "the last one stopped (in reverse order), and averaged; one server per engine ran the "
        f"same phases, one after the other. Ratios are each engine's figure over "
        f"{engines[0]}'s in this run: windows/s above 1 and latency below 1 are faster. "
        "Real-time streams serve what they are sent, so their windows/s ratio stays near 1 "
        "and their latency is what differs; the one-user overhead run is bound by its own "
        "latency, most of it the server's overhead, not compute.",
        "",
        *comparison_tables(comparison),
        "",
        "## Gate, each engine against its own ceiling",
        "",
        "```",
        gate_tables,
        "```",
        "",
        "Each engine's own report, CSVs and server log: "
        + ", ".join(f"[{name}]({name}/report.md)" for name in engines)
        + "; the figures above are in `comparison.json`.",
        "",
    ]
    (folder / "report.md").write_text("\n".join(lines))
    return gate_tables
