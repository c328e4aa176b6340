"""Prometheus metrics of the intake worker, one bundle built from a registry argument."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from speechstream.kafka.records import DEAD_LETTER_LABELS
from speechstream.metrics import MetricsBundle, metric


@dataclass(frozen=True)
class StreamsMetrics(MetricsBundle):
    """Validated, rejected (by code), replayed and dead-lettered events; chain heads refused;
    processing time."""

    validated: Counter = metric(Counter, "speechstream_streams_validated_total",
                                "Events that passed validation", labels=("type",))
    rejected: Counter = metric(Counter, "speechstream_streams_rejected_total",
                               "Events rejected, by reason code", labels=("code",))
    replays: Counter = metric(Counter, "speechstream_streams_replays_total",
                              "The same commitment seen again (no new event)")
    windows_freed: Counter = metric(
        Counter, "speechstream_streams_rate_limit_windows_freed_total",
        "Accepted submissions forgotten by the rate limit: duplicates, or FAILED evaluations",
    )
    withdrawn: Counter = metric(
        Counter, "speechstream_streams_evaluations_withdrawn_total",
        "Evaluation requests withdrawn: their submission was displaced by an earlier duplicate",
    )
    heads_refused: Counter = metric(
        Counter, "speechstream_streams_chain_heads_refused_total",
        "Heads on chain.blocks ignored: they passed the previous head further than the time "
        "between them allows",
    )
    dead_letters: Counter = metric(
        Counter, "speechstream_streams_dead_letters_total",
        "Records sent to the dead-letter topic (undecodable, or not trusted), by the consumer "
        "that set them aside and the kind of reason", labels=DEAD_LETTER_LABELS)
    seconds: Histogram = metric(
        Histogram, "speechstream_streams_processing_seconds", "Time to validate one event",
        buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.1),
    )
