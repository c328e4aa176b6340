"""Prometheus metrics of the sink, one bundle built from a registry argument."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from speechstream.kafka.records import DEAD_LETTER_LABELS
from speechstream.metrics import MetricsBundle, metric


@dataclass(frozen=True)
class SinkMetrics(MetricsBundle):
    """Rows written per table, batch durations, dead letters, retries, consumer renewals."""

    rows: Counter = metric(Counter, "speechstream_sink_rows_written_total",
                           "Rows staged per table", labels=("table",))
    batch_seconds: Histogram = metric(
        Histogram, "speechstream_sink_batch_seconds", "Time to write one batch",
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    )
    dead_letters: Counter = metric(
        Counter, "speechstream_sink_dead_letters_total",
        "Records sent to the dead-letter topic (undecodable, or the database cannot hold them) "
        "or, undecodable on it, kept in place; by consumer and kind of reason",
        labels=DEAD_LETTER_LABELS)
    retries: Counter = metric(Counter, "speechstream_sink_retries_total",
                              "Writes and offset commits tried again after a transient fault",
                              labels=("step",))
    renewals: Counter = metric(
        Counter, "speechstream_sink_consumer_renewals_total",
        "Consumers replaced after a fencing of the sink's own making (a session expired in an "
        "outage)")
