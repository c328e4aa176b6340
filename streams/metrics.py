"""Prometheus metrics of the validation worker, built in one place from a registry argument."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass(frozen=True)
class StreamsMetrics:
    """Validated, rejected (by code), replayed and dead-lettered events; processing time."""

    validated: Counter
    rejected: Counter
    replays: Counter
    dead_letters: Counter
    seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> StreamsMetrics:
        """Register the worker's metrics in ``registry``."""
        return cls(
            validated=Counter("speechstream_streams_validated_total",
                              "Events that passed validation", ["type"], registry=registry),
            rejected=Counter("speechstream_streams_rejected_total",
                             "Events rejected, by reason code", ["code"], registry=registry),
            replays=Counter("speechstream_streams_replays_total",
                            "The same commitment seen again (no new event)", registry=registry),
            dead_letters=Counter("speechstream_streams_dead_letters_total",
                                 "Undecodable records sent to the dead-letter topic",
                                 registry=registry),
            seconds=Histogram("speechstream_streams_processing_seconds",
                              "Time to validate one event",
                              buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.1),
                              registry=registry),
        )
