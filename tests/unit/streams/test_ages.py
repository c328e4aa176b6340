"""The intake's agents observe the age of the records they take (submission → intake), from
the broker's timestamp only."""

from __future__ import annotations

from faust.types.tuples import Message
from prometheus_client import CollectorRegistry

from speechstream.kafka.lag import AGE_METRIC, export_lag
from speechstream.settings import KafkaSettings
from streams.ages import RecordAges
from streams.chain import LOG_APPEND_TIME
from streams.metrics import StreamsMetrics
from streams.settings import StreamsSettings
from streams.worker import IntakeWorker

CREATE_TIME = 0


def _message(topic: str, timestamp: float, timestamp_type: int) -> Message:
    return Message(topic, 0, 1, timestamp, timestamp_type, None, b"k", b"v", None)


def _ages(registry: CollectorRegistry, topic: str) -> tuple[float | None, float | None]:
    labels = {"consumer": "intake", "topic": topic}
    return (registry.get_sample_value(f"{AGE_METRIC}_count", labels),
            registry.get_sample_value(f"{AGE_METRIC}_sum", labels))


def test_the_worker_exports_the_ages_its_agents_observe() -> None:
    registry = CollectorRegistry()
    worker = IntakeWorker(KafkaSettings(), StreamsSettings(), StreamsMetrics.create(registry))
    assert export_lag(registry, worker)
    (ages,) = worker.consumers()
    assert isinstance(ages, RecordAges) and ages.record_age is not None
    ages.observe(_message("t.submissions", 1000.0, LOG_APPEND_TIME), now=1002.5)
    ages.observe(_message("t.submissions", 1001.0, LOG_APPEND_TIME), now=1002.5)
    assert _ages(registry, "t.submissions") == (2, 4.0)


def test_a_time_the_producer_chose_is_not_believed() -> None:
    """A miner's record stamped by the miner (CreateTime) could claim any age."""
    registry = CollectorRegistry()
    worker = IntakeWorker(KafkaSettings(), StreamsSettings(), StreamsMetrics.create(registry))
    export_lag(registry, worker)
    (ages,) = worker.consumers()
    ages.observe(_message("t.submissions", 1.0, CREATE_TIME), now=1002.5)
    ages.observe(_message("t.submissions", -1.0, LOG_APPEND_TIME), now=1002.5)
    assert _ages(registry, "t.submissions") == (None, None)
    # A broker time after the reader's clock counts as no wait, not a negative one.
    ages.observe(_message("t.submissions", 2000.0, LOG_APPEND_TIME), now=1002.5)
    assert _ages(registry, "t.submissions") == (1, 0.0)

