"""The intake's agents observe the age of the records they take (submission → intake), from
the broker's timestamp only; its health says when it makes no progress."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from faust.types.tuples import Message
from prometheus_client import CollectorRegistry

from speechstream.kafka.lag import AGE_METRIC, export_lag
from speechstream.settings import KafkaSettings
from streams import worker as worker_module
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



# -- not progressing -----------------------------------------------------------------------


@dataclass
class _Running:
    started: bool = True
    state: str = "running"


@dataclass
class _App:
    consumer: object
    state: str = "running"


@dataclass
class _FaustConsumer:
    committed_at: float | None = None


def _health_rig(monkeypatch: pytest.MonkeyPatch, window_s: float = 60.0
                ) -> tuple[IntakeWorker, _FaustConsumer, dict[tuple[str, int], int]]:
    settings = StreamsSettings(progress_window_s=window_s)
    kafka = KafkaSettings(SPEECHSTREAM_TOPIC_PREFIX="t.")
    worker = IntakeWorker(kafka, settings, StreamsMetrics.create(CollectorRegistry()))
    consumer = _FaustConsumer()
    lag: dict[tuple[str, int], int] = {}
    worker._worker = _Running()  # type: ignore[assignment]  # noqa: SLF001
    worker._app = _App(consumer)  # type: ignore[assignment]  # noqa: SLF001
    monkeypatch.setattr(worker_module, "worker_lag",
                        lambda _app: [(t, p, n) for (t, p), n in lag.items()])
    return worker, consumer, lag


def test_lag_growing_with_nothing_committed_is_not_progressing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    worker, consumer, lag = _health_rig(monkeypatch)
    t0 = time.monotonic()
    lag["t.submissions", 0] = 5
    assert worker.health(t0).status == "ok"
    consumer.committed_at = t0 + 10  # a commit: progress
    lag["t.submissions", 0] = 50
    assert worker.health(t0 + 30).status == "ok"
    health = worker.health(t0 + 75)  # grown over the window, the last commit 65 s ago
    assert (health.healthy, health.status) == (False, "not progressing")
    assert health.details["reason"].startswith("50 records waiting, up from 5")
    assert health.details["last_commit_s_ago"] == 65.0
    consumer.committed_at = t0 + 76  # it commits again: progress
    assert worker.health(t0 + 77).status == "ok"


def test_a_backlog_worked_off_and_the_changelogs_are_progress(
        monkeypatch: pytest.MonkeyPatch) -> None:
    worker, _consumer, lag = _health_rig(monkeypatch)
    t0 = time.monotonic()
    changelog = KafkaSettings(SPEECHSTREAM_TOPIC_PREFIX="t.").topics.changelog(
        StreamsSettings().app_id, "last_accepted")
    lag["t.submissions", 0], lag[changelog, 0] = 500, 0
    assert worker.health(t0).status == "ok"
    lag["t.submissions", 0], lag[changelog, 0] = 400, 10_000  # a changelog is not work
    assert worker.health(t0 + 120).status == "ok"
    lag["t.submissions", 0] = 401  # now it grows, with no commit since the start
    health = worker.health(t0 + 200)
    assert health.status == "not progressing"
    assert health.details["last_commit_s_ago"] is None
