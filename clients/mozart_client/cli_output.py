"""What the `mozart` client commands print: the columns of each table, rows, JSON lines.

`cli_console` decides how a table looks (rich on a terminal, plain through a pipe).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mozart_client.cli_console import Columns, plain_text
from mozart_client.results import (
    ClassifyResult,
    HealthStatus,
    LabelScore,
    ModelInfo,
    ModelStatus,
    StreamNotice,
    StreamResult,
    Summary,
    WindowResult,
)


def to_json(value: Any) -> str:
    """Serialises dataclasses (and lists of them) to one line of JSON."""

    def default(item: Any) -> Any:
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            return dataclasses.asdict(item)
        if hasattr(item, "value"):  # enums
            return item.value
        raise TypeError(f"cannot serialise {type(item).__name__}")

    return json.dumps(value, default=default)


def json_lines(values: Sequence[Any]) -> str:
    """One JSON line per value, in order (what `--json` prints for a list of things)."""
    return "\n".join(to_json(value) for value in values)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows under headers as plain aligned columns (see `cli_console.plain_text`)."""
    return plain_text(Columns(headers, rows))


def _top(scores: Sequence[LabelScore], count: int = 3) -> str:
    return ", ".join(f"{s.label} {s.score:.2f}" for s in scores[:count])


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.1f}"


SILENT = "(silent)"
"""What a silent window (or an all-silent summary) shows in place of a label."""
LOW_CONFIDENCE_MARK = "?"
"""Appended to a low-confidence window's label: the model's guess, below its threshold."""


def window_label(result: WindowResult, label: str) -> str:
    """A window's label as the CLI shows it: `(silent)`, `label?` when low-confidence."""
    if result.silent:
        return SILENT
    return f"{label}{LOW_CONFIDENCE_MARK}" if result.low_confidence and label else label


def summary_flags(summary: Summary) -> str:
    """`, 2 silent, 1 low-confidence`: the summary's flagged windows, empty when none."""
    parts = [
        f"{count} {what}"
        for count, what in (
            (summary.silent_window_count, "silent"),
            (summary.low_confidence_window_count, "low-confidence"),
        )
        if count
    ]
    return "".join(f", {part}" for part in parts)


def summary_label(summary: Summary) -> str:
    """The summary's label; `(silent)` when every window was."""
    if summary.window_count and summary.silent_window_count == summary.window_count:
        return SILENT
    return summary.label


def plural(count: int, noun: str) -> str:
    """`1 window`, `2 windows`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class ClassifyRow:
    """One input of `classify` in the table: its result or its failure's status name."""

    name: str
    result: ClassifyResult | None = None
    status: str = ""


def classify_columns(rows: Sequence[ClassifyRow], show_windows: bool) -> list[Columns]:
    """One row per input, in input order; with `show_windows`, a table of every window too.

    A failed input's row shows `error: STATUS` as its label (the message goes to stderr).
    """
    cells = []
    for row in rows:
        r = row.result
        if r is None:
            cells.append([row.name, "-", f"error: {row.status}", "", "", "", ""])
            continue
        cells.append(
            [
                row.name,
                f"{r.model_name}:{r.model_version}",
                summary_label(r.summary),
                f"{r.summary.top_k[0].score:.3f}" if r.summary.top_k else "",
                f"{r.summary.window_count}{summary_flags(r.summary)}",
                _seconds(r.summary.audio_duration_ms),
                _top(r.summary.top_k[1:], 2),
            ]
        )
    headers = ["FILE", "MODEL", "LABEL", "SCORE", "WINDOWS", "AUDIO_S", "RUNNERS-UP"]
    tables = [Columns(headers, cells, wrap=frozenset({"FILE", "RUNNERS-UP"}))]
    if show_windows:
        window_rows = [
            [
                row.name,
                str(w.index),
                f"{_seconds(w.start_ms)}-{_seconds(w.end_ms)}",
                SILENT
                if w.silent
                else f"{LOW_CONFIDENCE_MARK if w.low_confidence else ''}{_top(w.top_k)}",
            ]
            for row in rows
            if row.result is not None
            for w in row.result.windows
        ]
        headers = ["FILE", "WINDOW", "TIME_S", "TOP LABELS"]
        tables.append(Columns(headers, window_rows, wrap=frozenset({"FILE", "TOP LABELS"})))
    return tables


def stream_header(smoothing: float) -> str:
    """The header of `mozart stream`'s rows; with smoothing on, the label column says so."""
    label = "SMOOTHED" if smoothing > 0 else "LABEL"
    return (
        f"{'WINDOW':>6}  {'TIME_S':>11}  {label:<16} {'SCORE':>5}  {'LATENCY_MS':>10}  "
        "QUEUE+COMPUTE_MS"
    )


def smoothed_top_k(result: WindowResult) -> tuple[LabelScore, ...]:
    """The window's best labels by smoothed score, as many as its raw top-k.

    The server's own smoothed top-k when it sent one; from a server older than that
    field, `smoothed_scores` ranked here (ties in label order).
    """
    if result.smoothed_top_k:
        return result.smoothed_top_k
    count = len(result.top_k) or 1
    best = sorted(range(len(result.smoothed_scores)), key=lambda i: -result.smoothed_scores[i])
    return tuple(
        LabelScore(
            result.labels[i] if i < len(result.labels) else str(i), result.smoothed_scores[i]
        )
        for i in best[:count]
    )


def stream_json(result: StreamResult) -> str:
    """One JSON line per stream event, tagged with its type (WindowResult, Summary, ...)."""
    return to_json({"type": type(result).__name__, **dataclasses.asdict(result)})


def stream_row(result: StreamResult, top_k: Sequence[LabelScore] | None = None) -> str:
    """One line per stream event, aligned under `stream_header`.

    Args:
        result: The event.
        top_k: The labels to show for a window (its smoothed top-k when smoothing
            is on); None shows its raw top-k.
    """
    if isinstance(result, WindowResult):
        shown = result.top_k if top_k is None else top_k
        label = window_label(result, shown[0].label if shown else "")
        # A silent window's scores mean nothing: show none.
        score = "-" if result.silent else f"{shown[0].score if shown else 0.0:.2f}"
        latency = "" if result.latency_ms is None else f"{result.latency_ms:.1f}"
        server_ms = (result.queue_time_us + result.compute_time_us) / 1000
        span = f"{_seconds(result.start_ms)}-{_seconds(result.end_ms)}"
        return (
            f"{result.index:>6}  {span:>11}  {label:<16} {score:>5}  {latency:>10}  {server_ms:.1f}"
        )
    if isinstance(result, Summary):
        return (
            f"summary: {summary_label(result) or '-'} over "
            f"{plural(result.window_count, 'window')}{summary_flags(result)}, "
            f"{_seconds(result.audio_duration_ms)} s of audio"
            + (f" ({_top(result.top_k)})" if result.top_k else "")
        )
    return notice_row(result)


def notice_row(notice: StreamNotice) -> str:
    """A stream's in-band notice."""
    return f"notice {notice.code}: {notice.message}"


def models_columns(models: Sequence[ModelInfo]) -> Columns:
    """One row per loaded model, with every label (wrapped on a narrow terminal)."""
    rows = [
        [
            m.name,
            ",".join(m.versions),
            m.task,
            str(m.sample_rate_hz),
            str(m.window_ms),
            str(m.default_hop_ms),
            f"{len(m.labels)}: {', '.join(m.labels)}",
        ]
        for m in models
    ]
    headers = ["NAME", "VERSIONS", "TASK", "RATE_HZ", "WINDOW_MS", "HOP_MS", "LABELS"]
    return Columns(headers, rows, wrap=frozenset({"LABELS"}))


def model_status_table(statuses: Sequence[ModelStatus]) -> str:
    """`model_status_columns` as plain text."""
    return plain_text(model_status_columns(statuses))


def model_status_columns(statuses: Sequence[ModelStatus]) -> Columns:
    """One row per model version: model, version, state and why it is not serving.

    A model with no version the server knows of gets one row with "-" for both.
    """
    rows: list[list[str]] = []
    for status in statuses:
        if not status.versions:
            rows.append([status.name, "-", "-", ""])
        for version in status.versions:
            rows.append(
                [status.name, version.version, version.state.value, _one_line(version.reason)]
            )
    return Columns(["MODEL", "VERSION", "STATE", "REASON"], rows, wrap=frozenset({"REASON"}))


def _one_line(text: str) -> str:
    # A load error can span lines (a traceback's last frames); a table row cannot.
    return " ".join(text.split())


def health_columns(statuses: Sequence[HealthStatus]) -> Columns:
    """One row per service, in the order asked."""
    rows = [[s.service or "(server)", s.status.value] for s in statuses]
    return Columns(["SERVICE", "STATUS"], rows)
