"""How the `mozart` client commands print results: readable tables or JSON."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, TextIO

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


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Formats rows under headers, each column as wide as its widest cell."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _top(scores: Sequence[LabelScore], count: int = 3) -> str:
    return ", ".join(f"{s.label} {s.score:.2f}" for s in scores[:count])


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.1f}"


def classify_table(results: Sequence[tuple[str, ClassifyResult]], show_windows: bool) -> str:
    """One row per file; with `show_windows`, every window of every file too."""
    rows = [
        [
            path,
            f"{r.model_name}:{r.model_version}",
            r.summary.label,
            f"{r.summary.top_k[0].score:.3f}" if r.summary.top_k else "",
            str(r.summary.window_count),
            _seconds(r.summary.audio_duration_ms),
            _top(r.summary.top_k[1:], 2),
        ]
        for path, r in results
    ]
    text = table(["FILE", "MODEL", "LABEL", "SCORE", "WINDOWS", "AUDIO_S", "RUNNERS-UP"], rows)
    if not show_windows:
        return text
    window_rows = [
        [path, str(w.index), f"{_seconds(w.start_ms)}-{_seconds(w.end_ms)}", _top(w.top_k)]
        for path, r in results
        for w in r.windows
    ]
    return text + "\n\n" + table(["FILE", "WINDOW", "TIME_S", "TOP LABELS"], window_rows)


STREAM_HEADER = (
    f"{'WINDOW':>6}  {'TIME_S':>11}  {'LABEL':<16} {'SCORE':>5}  {'LATENCY_MS':>10}  "
    "QUEUE+COMPUTE_MS"
)


def stream_json(result: StreamResult) -> str:
    """One JSON line per stream event, tagged with its type (WindowResult, Summary, ...)."""
    return to_json({"type": type(result).__name__, **dataclasses.asdict(result)})


def stream_row(result: StreamResult) -> str:
    """One line per stream event, aligned under STREAM_HEADER."""
    if isinstance(result, WindowResult):
        score = result.top_k[0].score if result.top_k else 0.0
        latency = "" if result.latency_ms is None else f"{result.latency_ms:.1f}"
        server_ms = (result.queue_time_us + result.compute_time_us) / 1000
        span = f"{_seconds(result.start_ms)}-{_seconds(result.end_ms)}"
        return (
            f"{result.index:>6}  {span:>11}  {result.label:<16} {score:>5.2f}  "
            f"{latency:>10}  {server_ms:.1f}"
        )
    if isinstance(result, Summary):
        return (
            f"summary: {result.label or '-'} over {result.window_count} windows, "
            f"{_seconds(result.audio_duration_ms)} s of audio ({_top(result.top_k)})"
        )
    return notice_row(result)


def notice_row(notice: StreamNotice) -> str:
    """A stream's in-band notice."""
    return f"notice {notice.code}: {notice.message}"


def models_table(models: Sequence[ModelInfo]) -> str:
    """One row per loaded model."""
    rows = [
        [
            m.name,
            ",".join(m.versions),
            m.task,
            str(m.sample_rate_hz),
            str(m.window_ms),
            str(m.default_hop_ms),
            f"{len(m.labels)}: {', '.join(m.labels[:4])}{', ...' if len(m.labels) > 4 else ''}",
        ]
        for m in models
    ]
    return table(["NAME", "VERSIONS", "TASK", "RATE_HZ", "WINDOW_MS", "HOP_MS", "LABELS"], rows)


def model_status_table(statuses: Sequence[ModelStatus]) -> str:
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
    return table(["MODEL", "VERSION", "STATE", "REASON"], rows)


def _one_line(text: str) -> str:
    # A load error can span lines (a traceback's last frames); a table row cannot.
    return " ".join(text.split())


def health_table(statuses: Sequence[HealthStatus]) -> str:
    """One row per service."""
    rows = [[s.service or "(server)", s.status.value] for s in statuses]
    return table(["SERVICE", "STATUS"], rows)


def print_line(text: str, stream: TextIO) -> None:
    """Prints and flushes, so rows appear live even through a pipe."""
    stream.write(text + "\n")
    stream.flush()
