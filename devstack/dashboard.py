"""The Grafana dashboard of a speechstream deployment, built with Grafana's Foundation SDK.

``speechstream dev dashboard`` writes it (``docker/grafana/speechstream.json`` is its output,
checked to be current by a test). Every panel's query reads the metrics the services export
(``docs/operations.md``, "Metrics and alerts") from a Prometheus chosen by the dashboard's
``datasource`` variable; a test runs each query against a real Prometheus scraping the demo's
services and requires data from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders.common import VizLegendOptions
from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUTPUT = Path(__file__).resolve().parent.parent / "docker" / "grafana" / "speechstream.json"
UID = "speechstream-pipeline"
RATE = "$__rate_interval"
"""Grafana's rate window (at least four scrape intervals); a test reads it as ``1m``."""
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


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


ROWS: tuple[tuple[str, tuple[PanelSpec, ...]], ...] = (
    ("Is it moving", (
        PanelSpec("Services healthy", "1 while a service's /health answers 200 (per status "
                  "it reports); 0 on 503: not progressing, recovery stalled, degraded.",
                  "none", (Query("min by (service, status) (speechstream_healthy)",
                                 "{{service}} {{status}}"),)),
        PanelSpec("Scrape targets up", "0: Prometheus cannot read a service's /metrics.",
                  "none", (Query("up", "{{job}} {{instance}}"),)),
        PanelSpec("Consumer lag", "Records waiting past each consumer's position, by topic. "
                  "Growing while nothing is committed is a stuck consumer.",
                  "short", (Query("sum by (consumer, topic) (speechstream_consumer_lag)",
                                  "{{consumer}} {{topic}}"),)),
        PanelSpec("Record age when taken (p95)", "From a record's broker timestamp to when "
                  "its consumer took it: the latency of each hop.", "s",
                  (Query("histogram_quantile(0.95, sum by (le, consumer) (rate("
                         f"speechstream_consumed_record_age_seconds_bucket[{RATE}])))",
                         "{{consumer}}"),)),
    )),
    ("Intake", (
        PanelSpec("Validated and rejected", "Events that passed validation, by type, and "
                  "rejections, by code (per second).", "ops",
                  (Query(f"sum by (type) (rate(speechstream_streams_validated_total[{RATE}]))",
                         "validated {{type}}"),
                   Query(f"sum by (code) (rate(speechstream_streams_rejected_total[{RATE}]))",
                         "rejected {{code}}"))),
        PanelSpec("Dead letters", "Records set aside on the dead-letter topic, per minute, by "
                  "consumer and kind of reason (docs/operations.md, Records a service cannot "
                  "process).", "short",
                  (Query('sum by (consumer, reason) (rate({__name__=~"speechstream_.*dead_'
                         f'letters_total"}}[{RATE}])) * 60', "{{consumer}} {{reason}}"),)),
    )),
    ("Evaluation", (
        PanelSpec("Evaluations finished", "By final status, in each rate window.", "short",
                  (Query(f"sum by (status) (increase(speechstream_evaluations_total[{RATE}]))",
                         "{{status}}"),)),
        PanelSpec("Evaluation duration", "Median and 95th percentile of one evaluation.", "s",
                  tuple(Query(f"histogram_quantile({q}, sum by (le) (rate("
                              f"speechstream_evaluation_seconds_bucket[{RATE}])))", f"p{p}")
                        for q, p in (("0.5", "50"), ("0.95", "95")))),
        PanelSpec("Evaluations in progress", "Requests being evaluated now, all evaluators.",
                  "short", (Query("sum(speechstream_evaluations_in_progress)", "running"),)),
        PanelSpec("Evaluator busy fraction", "Seconds of evaluation finished per second, by "
                  "evaluator: near 1 is an evaluator that never waits (add evaluators while "
                  "requests wait); counted when each evaluation ends.", "percentunit",
                  (Query("sum by (instance) (rate(speechstream_evaluation_seconds_sum"
                         f"[{RATE}]))", "{{instance}}"),)),
    )),
    ("Results", (
        PanelSpec("Rows written", "Rows the sink writes to PostgreSQL per second, by table.",
                  "ops", (Query("sum by (table) (rate(speechstream_sink_rows_written_total"
                                f"[{RATE}]))", "{{table}}"),)),
        PanelSpec("Blocks since this validator's weights", "An epoch is "
                  "speechstream_validator_epoch_blocks; the alert fires at two.", "short",
                  (Query("max by (job) (speechstream_validator_blocks_since_weights)",
                         "since weights"),
                   Query("max by (job) (speechstream_validator_epoch_blocks)", "epoch"))),
        PanelSpec("API requests", "Requests per second by route and status code.", "reqps",
                  (Query("sum by (route, code) (rate(speechstream_api_requests_total"
                         f"[{RATE}]))", "{{route}} {{code}}"),)),
    )),
)


def queries() -> list[tuple[str, str]]:
    """``(panel title, expression)`` of every query of the dashboard."""
    return [(panel.title, query.expr) for _, panels in ROWS for panel in panels
            for query in panel.queries]


def build() -> Dashboard:
    """The dashboard's builder."""
    dashboard = (
        Dashboard("speechstream: the pipeline")
        .uid(UID)
        .tags(["speechstream"])
        .refresh("30s")
        .time("now-1h", "now")
        .with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    for title, panels in ROWS:
        dashboard = dashboard.with_row(Row(title))
        for spec in panels:
            panel = (Timeseries().title(spec.title).description(spec.description)
                     .unit(spec.unit).datasource(DATASOURCE).height(8).span(8)
                     .legend(VizLegendOptions().show_legend(True)
                             .display_mode(LegendDisplayMode.LIST)
                             .placement(LegendPlacement.BOTTOM)))
            for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
                panel = panel.with_target(Dataquery().expr(query.expr).ref_id(ref)
                                          .legend_format(query.legend).datasource(DATASOURCE))
            dashboard = dashboard.with_panel(panel)
    return dashboard


def render() -> str:
    """The dashboard as Grafana's JSON model."""
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


def write(path: Path = OUTPUT) -> Path:
    """Write :func:`render` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render())
    return path
