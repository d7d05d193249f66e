"""Mozart's Grafana dashboards, as code (grafana-foundation-sdk, pinned in constraints.txt).

    python docker/grafana/dashboards.py            # writes docker/grafana/dashboards/*.json
    python docker/grafana/dashboards.py --check    # exits 1 when a written file is stale

Grafana loads the written JSON through docker/grafana/provisioning/dashboards/mozart.yml.
Every query names only metrics that the server exports (docs/server.md, "Metrics") or the
recording rules of k8s/monitoring; tests/deploy/test_dashboards.py checks that, and
tests/deploy/test_stack.py asks a real Prometheus each query under load.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

OUT = Path(__file__).resolve().parent / "dashboards"
#: The provisioned datasource (provisioning/datasources/prometheus.yml).
DATASOURCE = DataSourceRef(type_val="prometheus", uid="mozart-prometheus")
#: The compute ceiling in windows/s: benchmarks/ceiling.py measures it per machine and
#: model (244 to 555 windows/s for composer-cnn on the 2-core development machine).
DEFAULT_CEILING = "400"
RATE = "$__rate_interval"
MODEL = 'model=~"$model"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"  # or "stat"
    width: int = 12


def _quantiles(metric: str, by: str, legend: str) -> tuple[Query, ...]:
    """p50, p90 and p99 of a histogram; filtered by $model when it has a model label."""
    selector = f"{metric}_bucket{{{MODEL}}}" if "model" in by else f"{metric}_bucket"
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by (le, {by}) (rate({selector}[{RATE}])))",
            f"p{round(q * 100)} {legend}",
        )
        for q in (0.5, 0.9, 0.99)
    )


ROWS: tuple[tuple[str, tuple[PanelSpec, ...]], ...] = (
    ("Traffic", (
        PanelSpec("Calls by method and status",
                  "Finished gRPC calls per second (mozart_requests_total), by method and gRPC "
                  "status name.", "reqps",
                  (Query(f"sum by (method, code) (rate(mozart_requests_total{{{MODEL}}}[{RATE}]))",
                         "{{method}} {{code}}"),)),
        PanelSpec("Server error ratio",
                  "Share of calls answered INTERNAL, UNKNOWN or DATA_LOSS (alert "
                  "MozartServerErrors over 1%).", "percentunit",
                  (Query('sum(rate(mozart_requests_total{code=~"INTERNAL|UNKNOWN|DATA_LOSS"}'
                         f"[{RATE}])) / sum(rate(mozart_requests_total[{RATE}]))", "errors"),)),
        PanelSpec("HTTP API calls",
                  "REST and WebSocket calls per second (mozart_http_requests_total).", "reqps",
                  (Query("sum by (method, protocol, code) "
                         f"(rate(mozart_http_requests_total[{RATE}]))",
                         "{{protocol}} {{method}} {{code}}"),)),
        PanelSpec("Active streams", "Open StreamClassify calls (mozart_active_streams).",
                  "short", (Query("sum(mozart_active_streams)", "streams"),)),
    )),
    ("Latency", (
        PanelSpec("Call latency", "Server-side time of a call, by method.", "s",
                  _quantiles("mozart_request_duration_seconds", "method", "{{method}}")),
        PanelSpec("Stream window latency",
                  "From the chunk that completed a window to its result's send.", "s",
                  _quantiles("mozart_stream_window_latency_seconds", "model, version",
                             "{{model}}/{{version}}")),
        PanelSpec("Queue vs compute time (p99)",
                  "Time a window waits in the batcher's queue against the engine time of its "
                  "batch (alert MozartQueueSlow: queue p99 over 250 ms).", "s",
                  (Query("histogram_quantile(0.99, sum by (le, model, version) "
                         f"(rate(mozart_queue_duration_seconds_bucket{{{MODEL}}}[{RATE}])))",
                         "queue {{model}}/{{version}}"),
                   Query("histogram_quantile(0.99, sum by (le, model, version) "
                         f"(rate(mozart_compute_duration_seconds_bucket{{{MODEL}}}[{RATE}])))",
                         "compute {{model}}/{{version}}"))),
    )),
    ("Batching and saturation", (
        PanelSpec("Mean batch size", "Windows per engine batch.", "short",
                  (Query(f"sum by (model, version) (rate(mozart_batch_size_sum{{{MODEL}}}[{RATE}]))"
                         " / sum by (model, version) "
                         f"(rate(mozart_batch_size_count{{{MODEL}}}[{RATE}]))",
                         "{{model}}/{{version}}"),)),
        PanelSpec("Queue depth", "Windows waiting in each batcher's queue.", "short",
                  (Query(f"sum by (model, version) (mozart_queue_depth{{{MODEL}}})",
                         "{{model}}/{{version}}"),)),
        PanelSpec("Saturation against the ceiling",
                  "Windows computed per second over the compute ceiling that benchmarks/"
                  "ceiling.py measured (the `ceiling` variable, windows/s).", "percentunit",
                  (Query(f"sum(rate(mozart_batch_size_sum[{RATE}])) / $ceiling", "saturation"),)),
        PanelSpec("Windows computed per version", "Windows per second each version computed.",
                  "short",
                  (Query("sum by (model, version) "
                         f"(rate(mozart_batch_size_sum{{{MODEL}}}[{RATE}]))",
                         "{{model}}/{{version}}"),)),
    )),
    ("Model versions", (
        PanelSpec("Serving versions", "1 for each serving version, with its engine.", "short",
                  (Query("sum by (model, version, kind, precision, device) "
                         f"(mozart_model_engine_info{{{MODEL}}})",
                         "{{model}}/{{version}} {{kind}} {{precision}} {{device}}"),),
                  kind="stat"),
        PanelSpec("Non-finite scores", "Windows scored NaN or infinite, answered INTERNAL.",
                  "short",
                  (Query("sum by (model, version) "
                         f"(rate(mozart_nonfinite_scores_total{{{MODEL}}}[{RATE}]))",
                         "{{model}}/{{version}}"),)),
    )),
    ("Rollout", (
        PanelSpec("Rollout weights", "Percent of unversioned calls each version gets.",
                  "percent",
                  (Query(f"sum by (model, version) (mozart_rollout_weight{{{MODEL}}})",
                         "{{model}}/{{version}}"),)),
        PanelSpec("Rollout outcomes", "Calls and shadow copies under rollout, by status.",
                  "reqps",
                  (Query("sum by (model, version, code) "
                         f"(rate(mozart_rollout_requests_total{{{MODEL}}}[{RATE}]))",
                         "{{model}}/{{version}} {{code}}"),)),
        PanelSpec("Rollout p99 window latency", "Queue plus compute time per version.", "s",
                  (Query("histogram_quantile(0.99, sum by (le, model, version) "
                         f"(rate(mozart_rollout_window_latency_seconds_bucket{{{MODEL}}}"
                         f"[{RATE}])))", "{{model}}/{{version}}"),)),
    )),
    ("Drift", (
        PanelSpec("Drift scores",
                  "Against each version's reference_stats (alerts MozartInputDrift over 0.6, "
                  "MozartLoudnessDrift over 1, MozartPredictionDrift over 2).", "short",
                  (Query(f"max by (model, version) (mozart_drift_mel_mean_shift{{{MODEL}}})",
                         "mel shift {{model}}/{{version}}"),
                   Query(f"max by (model, version) (mozart_drift_rms_psi{{{MODEL}}})",
                         "RMS PSI {{model}}/{{version}}"),
                   Query(f"max by (model, version) (mozart_drift_class_psi{{{MODEL}}})",
                         "class PSI {{model}}/{{version}}")),
                  width=24),
    )),
)  # fmt: skip


def _panel(spec: PanelSpec) -> timeseries.Panel | stat.Panel:
    panel = timeseries.Panel() if spec.kind == "timeseries" else stat.Panel()
    panel.title(spec.title).description(spec.description).unit(spec.unit)
    panel.datasource(DATASOURCE).height(8).span(spec.width)
    for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
        panel.with_target(
            prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref)
        )
    return panel


def serving_dashboard() -> dashboard.Dashboard:
    """The serving dashboard: traffic, latency, batching, versions, rollout, drift."""
    board = (
        dashboard.Dashboard("Mozart serving")
        .uid("mozart-serving")
        .tags(["mozart"])
        .description(
            "Calls, latency, batching, saturation, model versions, rollouts and drift "
            "of the Mozart servers Prometheus scrapes (docs/monitoring.md)."
        )
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(
            dashboard.QueryVariable("model")
            .label("Model")
            .datasource(DATASOURCE)
            .query("label_values(mozart_model_loaded, model)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_variable(
            dashboard.TextBoxVariable("ceiling")
            .label("Ceiling (windows/s)")
            .default_value(DEFAULT_CEILING)
            .current(VariableOption(text=DEFAULT_CEILING, value=DEFAULT_CEILING))
        )
    )
    for title, panels in ROWS:
        board.with_row(dashboard.Row(title))
        for spec in panels:
            board.with_panel(_panel(spec))
    return board


DASHBOARDS = {"mozart-serving.json": serving_dashboard}


def render(build: object) -> str:
    """The dashboard's JSON as Grafana provisioning reads it, stable byte for byte."""
    built = build.build()  # type: ignore[attr-defined]
    return json.dumps(built, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a written file is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        text = render(build())
        path = OUT / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
            continue
        OUT.mkdir(exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)} (run python docker/grafana/dashboards.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
