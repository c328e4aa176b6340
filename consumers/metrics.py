"""Prometheus metrics of an evaluator, built in one place from a registry argument."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

EVALUATION_BUCKETS = (0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)


@dataclass(frozen=True)
class EvaluatorMetrics:
    """Evaluations by final status, their durations, what runs now, aborts, and liveness."""

    evaluations: Counter
    evaluation_seconds: Histogram
    in_progress: Gauge
    dead_letters: Counter
    transactions_aborted: Counter
    last_poll: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> EvaluatorMetrics:
        """Register the evaluator's metrics in ``registry``."""
        return cls(
            evaluations=Counter(
                "speechstream_evaluations_total", "Evaluations finished, by final status",
                ["status"], registry=registry,
            ),
            evaluation_seconds=Histogram(
                "speechstream_evaluation_seconds", "Wall time of one evaluation",
                buckets=EVALUATION_BUCKETS, registry=registry,
            ),
            in_progress=Gauge(
                "speechstream_evaluations_in_progress", "Evaluations running now",
                registry=registry,
            ),
            dead_letters=Counter(
                "speechstream_evaluator_dead_letters_total",
                "Undecodable requests sent to the dead-letter topic", registry=registry,
            ),
            transactions_aborted=Counter(
                "speechstream_evaluator_transactions_aborted_total",
                "Transactions aborted (their request is evaluated again)", registry=registry,
            ),
            last_poll=Gauge(
                "speechstream_evaluator_last_poll_timestamp_seconds",
                "When the evaluator last polled Kafka (health)", registry=registry,
            ),
        )
