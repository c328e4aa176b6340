"""Consumer lag as a metric: how many records each consuming service has yet to take, per
consumer group, topic and partition, computed when ``/metrics`` is scraped.

``speechstream_consumer_lag{consumer, group, topic, partition}`` is the partition's end (as
the consumer's last fetch saw it) minus the consumer's position. A service that stops making
progress shows it as lag that grows while the records keep coming (the alert rules in
``docker/prometheus/``). A partition the consumer has not fetched from yet is left out.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LAG_METRIC = "speechstream_consumer_lag"
AGE_METRIC = "speechstream_consumed_record_age_seconds"
AGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
               3600.0)

Lag = tuple[str, str, str, int, int]
"""(consumer, group, topic, partition, records)."""


class LagSource(Protocol):
    """A consumer that can tell its lag without asking the broker (``EventConsumer``)."""

    name: str

    @property
    def group(self) -> str: ...

    def lag(self) -> list[tuple[str, int, int]]: ...


class AgeObserved(Protocol):
    """A consumer that observes the age of the records it takes (``EventConsumer``)."""

    record_age: Histogram | None


@runtime_checkable
class HasConsumers(Protocol):
    """A service whose consumers' lag and record ages are exported (each consuming
    service)."""

    def lag(self) -> Iterable[Lag]:
        """Its consumers' lag now (called from the metrics server's thread)."""

    def consumers(self) -> Sequence[AgeObserved]:
        """Its ``EventConsumer`` s."""


def lag_of(consumers: Sequence[LagSource]) -> Iterator[Lag]:
    """The lag of ``consumers``, labelled with their names and groups."""
    for consumer in consumers:
        for topic, partition, records in consumer.lag():
            yield consumer.name, consumer.group, topic, partition, records


class ConsumerLag(Collector):
    """Collects ``speechstream_consumer_lag`` from ``source`` at each scrape."""

    def __init__(self, source: Callable[[], Iterable[Lag]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            LAG_METRIC, "Records past the consumer's position: the partition's end as its "
            "last fetch saw it minus its position", labels=["consumer", "group", "topic",
                                                           "partition"])
        for consumer, group, topic, partition, records in self._source():
            family.add_metric([consumer, group, topic, str(partition)], records)
        yield family


def export_lag(registry: CollectorRegistry, service: object) -> bool:
    """Register the lag of ``service``'s consumers in ``registry``, and a histogram of the age
    of the records they take (``speechstream_consumed_record_age_seconds{consumer, topic}``,
    from the record's broker timestamp to when it is taken: its wait on that hop), if it has
    consumers; whether it did."""
    if not isinstance(service, HasConsumers):
        return False
    registry.register(ConsumerLag(service.lag))
    ages = Histogram(AGE_METRIC, "From a record's broker timestamp to when the consumer took "
                     "it: its wait on this hop of the pipeline", ["consumer", "topic"],
                     buckets=AGE_BUCKETS, registry=registry)
    for consumer in service.consumers():
        consumer.record_age = ages
    return True


class Progress:
    """Whether a consumer makes progress: it does not while its lag has grown over the last
    ``window_s`` and nothing was committed in that time (a service's ``/health`` answers 503
    then). Fed the consumer's lag each time it is asked (each ``/health`` and each scrape)."""

    def __init__(self, window_s: float, now: float | None = None) -> None:
        self.window_s = window_s
        self._committed_at = time.monotonic() if now is None else now
        self._samples: deque[tuple[float, int]] = deque()

    def committed(self, now: float | None = None) -> None:
        """Offsets were committed (by the consumer, or in a transaction)."""
        self._committed_at = time.monotonic() if now is None else now

    def stalled(self, lag: int, now: float | None = None) -> str | None:
        """Why the consumer is not making progress, with ``lag`` records waiting now; None
        while it is."""
        now = time.monotonic() if now is None else now
        samples = self._samples
        samples.append((now, lag))
        # Keep one sample at least a window old, as the base to compare with.
        while len(samples) > 1 and samples[1][0] <= now - self.window_s:
            samples.popleft()
        quiet_s = now - self._committed_at
        base_at, base = samples[0]
        if quiet_s < self.window_s or base_at > now - self.window_s or lag <= base:
            return None
        return (f"{lag} records waiting, up from {base} {now - base_at:.0f} s ago, and nothing "
                f"committed for {quiet_s:.0f} s")
