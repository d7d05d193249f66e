"""`mozart analyze`'s outputs: the table on stdout and the TOML file the server loads."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from mozart_optimize.analyze import NOISY_SPREAD, SATURATION_TARGET, Analysis, Point


def _row(analysis: Analysis, point: Point, chosen: Point) -> str:
    mark = "*" if point == chosen else " "
    return (
        f"{mark} {point.layout.describe():<9} {point.limits.describe():<10} "
        f"{point.ceiling_windows_per_s:>8.0f} {point.served_windows_per_s:>8.0f} "
        f"{analysis.saturation(point):>6.2f} {point.c1_median_ms:>8.2f} {point.c1_p99_ms:>8.2f} "
        f"{point.batch1_compute_ms:>8.2f} {point.mean_batch:>6.1f} "
        f"{point.cpu_ms_per_window:>7.2f} {point.spread:>7.0%}"
    )


def format_table(analysis: Analysis) -> str:
    """Every point with its figures, the run's ceiling, and the choice with its reason."""
    chosen, reason = analysis.best()
    lines = [
        f"mozart analyze: {analysis.model} v{analysis.version}, {analysis.artifact} "
        f"({analysis.precision}), {analysis.cpus} usable CPUs, {analysis.grid.rounds} rounds "
        f"of {analysis.grid.seconds:g} s, saturation at {analysis.grid.concurrency} callers",
        "",
        f"  {'layout':<9} {'batch':<10} {'ceiling':>8} {'served':>8} {'ratio':>6} "
        f"{'c=1 p50':>8} {'c=1 p99':>8} {'batch-1':>8} {'mean':>6} {'CPU ms':>7} {'spread':>7}",
        f"  {'IxT':<9} {'max/delay':<10} {'w/s':>8} {'w/s':>8} {'':>6} "
        f"{'ms':>8} {'ms':>8} {'ms':>8} {'batch':>6} {'/window':>7} {'':>7}",
    ]
    lines += [_row(analysis, point, chosen) for point in analysis.points]
    lines += [
        "",
        f"run ceiling: {analysis.ceiling_windows_per_s:.0f} windows/s (the best layout's engine "
        f"alone); fastest batch-1 compute: {analysis.batch1_compute_ms:.2f} ms",
        f"ratio = served / run ceiling (target {SATURATION_TARGET:.2f}); CPU ms/window = this "
        f"process's CPU time per served window; spread = served max/min - 1 over the rounds",
        f"chosen (*): {chosen.layout.describe()}, batch {chosen.limits.describe()}: {reason}",
    ]
    noisy = [point for point in analysis.points if point.spread > NOISY_SPREAD]
    if noisy:
        lines.append(
            f"warning: {len(noisy)} of {len(analysis.points)} points spread by more than "
            f"{NOISY_SPREAD:.0%} over the rounds: the machine was busy; measure again with "
            "more --rounds or --seconds before trusting the choice"
        )
    return "\n".join(lines)


def toml_text(analysis: Analysis, started: datetime) -> str:
    """The TOML file: a header saying what was measured and why, then the chosen settings."""
    chosen, reason = analysis.best()
    layout, limits = chosen.layout, chosen.limits
    sizes = ", ".join(str(size) for size in limits.preferred_batch_sizes)
    header = [
        "# Written by `mozart analyze`; load it with MOZART_CONFIG_FILE=<this file> mozart serve.",
        f"# Measured {started.strftime('%Y-%m-%dT%H:%M:%SZ')} on {analysis.cpus} usable CPUs:",
        f"# {analysis.model} v{analysis.version}, {analysis.artifact} ({analysis.precision}), "
        f"{len(analysis.points)} points x {analysis.grid.rounds} rounds of "
        f"{analysis.grid.seconds:g} s,",
        "# each through the server's engine and dynamic batcher, one caller at a time and "
        f"{analysis.grid.concurrency} at once,",
        f"# against the run's ceiling of {analysis.ceiling_windows_per_s:.0f} windows/s "
        f"(fastest batch-1 compute {analysis.batch1_compute_ms:.2f} ms).",
        f"# Chosen: {layout.describe()}, batch {limits.describe()}: served "
        f"{chosen.served_windows_per_s:.0f} windows/s ({analysis.saturation(chosen):.2f} of the "
        f"ceiling), c=1 median {chosen.c1_median_ms:.2f} ms.",
        f"# Why: {reason}.",
        "# Flags and MOZART_* variables still win over this file.",
    ]
    body = [
        f"instances = {layout.instances}",
        f"intra_op_threads = {layout.intra_op_threads}",
        f"allow_spinning = {'true' if layout.allow_spinning else 'false'}",
        f"max_batch_size = {limits.max_batch_size}",
        f"max_queue_delay_us = {limits.max_queue_delay_us}",
        f"preferred_batch_sizes = [{sizes}]",
    ]
    return "\n".join([*header, "", *body, ""])


def write_toml(analysis: Analysis, path: Path, started: datetime) -> Path:
    """Writes `toml_text` to `path` (its folder is created) and returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(toml_text(analysis, started), encoding="utf-8")
    return path
