"""Prometheus metrics of the sink, built in one place from a registry argument."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class SinkMetrics:
    """Rows written per table, batch durations, dead letters; all in ``registry``."""

    registry: CollectorRegistry
    rows: Counter
    batch_seconds: Histogram
    dead_letters: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SinkMetrics:
        """Register the sink's metrics in ``registry`` (tests pass a fresh one)."""
        return cls(
            registry=registry,
            rows=Counter(
                "speechstream_sink_rows_written_total", "Rows staged and merged, per table",
                ["table"], registry=registry,
            ),
            batch_seconds=Histogram(
                "speechstream_sink_batch_seconds",
                "Time to write one batch and commit its offsets",
                buckets=BATCH_BUCKETS, registry=registry,
            ),
            dead_letters=Counter(
                "speechstream_sink_dead_letters_total",
                "Undecodable records sent to the dead-letter topic",
                registry=registry,
            ),
        )

    def serve(self, port: int) -> None:
        """Expose the registry over HTTP on ``port`` (``/metrics``)."""
        start_http_server(port, registry=self.registry)
