"""The run's report: a gate table in markdown for people and the same figures in JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mozart_optimize.pipeline import Run, StageResult

REPORT_NAME = "report"


def _figures(stage: StageResult) -> dict[str, Any]:
    return {
        "stage": stage.stage,
        "file": stage.file,
        "status": stage.status,
        "reasons": stage.reasons,
        "accuracy": {name: value.as_dict() for name, value in stage.accuracy.items()},
        "speed": stage.speed.as_dict() if stage.speed else None,
    }


def as_json(run: Run) -> dict[str, Any]:
    """The report as JSON-ready values."""
    options = asdict(run.options)
    options["data_root"] = str(run.options.data_root)
    return {
        "model": run.model,
        "version": run.version,
        "options": options,
        "stages": [_figures(stage) for stage in run.stages],
        "artifacts": run.artifacts,
    }


def _row(stage: StageResult) -> str:
    agreement = ", ".join(f"{n} {a.agreement:.2%}" for n, a in stage.accuracy.items()) or "-"
    drop = ", ".join(f"{n} {a.accuracy_drop_points:+.2f}" for n, a in stage.accuracy.items()) or "-"
    difference = max((a.max_abs_difference for a in stage.accuracy.values()), default=None)
    speed = stage.speed
    batch1 = f"{speed.batch1_latency_ratio:.2f}" if speed else "-"
    best = (f"{speed.best_throughput_ratio:.2f} (batch {speed.as_dict()['best_batch_size']})"
            if speed else "-")  # fmt: skip
    why = "; ".join(stage.reasons) or "-"
    diff = f"{difference:.1e}" if difference is not None else "-"
    return (f"| `{stage.file}` | **{stage.status}** | {agreement} | {drop} | {diff} | {batch1} "
            f"| {best} | {why} |")  # fmt: skip


def as_markdown(run: Run) -> str:
    """The gate table and the thresholds it was judged by."""
    thresholds = run.options.thresholds
    lines = [
        f"# mozart optimize: {run.model}/{run.version}",
        "",
        f"Gate splits: {', '.join(run.options.gate_splits)} of `{run.options.data_root}`. "
        f"Calibration: {run.options.calibration_windows} windows of "
        f"`{run.options.calibration_split}`, seed {run.options.seed}.",
        f"Admitted when agreement >= {thresholds.min_agreement:.2%}, accuracy drop <= "
        f"{thresholds.max_accuracy_drop_points:.2f} points (FP32 rewrites: max probability "
        f"difference <= {thresholds.max_abs_difference:.0e}) and best throughput > "
        f"{thresholds.min_speedup:.2f}x FP32. Ratios above 1 are faster than `model.onnx`.",
        "",
        "| artifact | status | agreement with FP32 | accuracy drop (points) | max prob. difference "
        "| batch-1 latency ratio | best throughput ratio | why |",
        "|---|---|---|---|---|---|---|---|",
        *(_row(stage) for stage in run.stages),
        "",
    ]
    for stage in run.stages:
        if stage.speed is None:
            continue
        lines += [f"## `{stage.file}` speed (windows/s; median ms per batch)", "",
                  "| batch | FP32 | candidate | ratio |", "|---|---|---|---|"]  # fmt: skip
        for ref, cand in zip(stage.speed.reference, stage.speed.candidate, strict=True):
            lines.append(
                f"| {ref.batch_size} | {ref.windows_per_s:.0f} ({ref.median_ms:.2f} ms) "
                f"| {cand.windows_per_s:.0f} ({cand.median_ms:.2f} ms) "
                f"| {cand.windows_per_s / ref.windows_per_s:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_report(run: Run, folder: Path) -> tuple[Path, Path]:
    """Writes report.md and report.json into `folder`; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    markdown = folder / f"{REPORT_NAME}.md"
    data = folder / f"{REPORT_NAME}.json"
    markdown.write_text(as_markdown(run))
    data.write_text(json.dumps(as_json(run), indent=2) + "\n")
    return markdown, data
