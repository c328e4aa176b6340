"""Prometheus metrics of the sink, built in one place from a registry argument."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass(frozen=True)
class SinkMetrics:
    """Rows written per table, batch durations, dead letters."""

    rows: Counter
    batch_seconds: Histogram
    dead_letters: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SinkMetrics:
        """Register the sink's metrics in ``registry``."""
        return cls(
            rows=Counter(
                "speechstream_sink_rows_written_total", "Rows staged per table",
                ["table"], registry=registry,
            ),
            batch_seconds=Histogram(
                "speechstream_sink_batch_seconds", "Time to write one batch",
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
                registry=registry,
            ),
            dead_letters=Counter(
                "speechstream_sink_dead_letters_total", "Undecodable records sent to the DLQ",
                registry=registry,
            ),
        )
