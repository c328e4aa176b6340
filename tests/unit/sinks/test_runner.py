"""The sink service outlives a database or broker restart: it waits, writes the same batch
again, and commits its offsets once, after the database commit; a fatal error ends it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from schemas.envelope import Envelope
from sinks.base import SinkWriter
from sinks.exceptions import SinkError
from sinks.metrics import SinkMetrics
from sinks.postgres import PostgresWriter
from sinks.runner import SinkService, consumer_overrides, sink_topics, static_member_id
from sinks.settings import SinkSettings
from speechstream.exceptions import ConsumeError
from speechstream.kafka.producer import EventProducer
from speechstream.monitoring import Health
from speechstream.settings import KafkaSettings
from tests.unit.consumers.fakes import FakeMessage, request_envelope, request_message

LOST = psycopg.OperationalError("consuming input failed: server closed the connection "
                                "unexpectedly")


def _not_written(cause: Exception) -> SinkError:
    try:
        raise SinkError(f"batch of 2 events not written: {cause}") from cause
    except SinkError as exc:
        return exc


@dataclass
class FakeWriter(SinkWriter):
    """Raises the queued errors, one per call, then writes; records every call in ``log``."""

    log: list[str]
    fail: list[Exception] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)

    def start(self) -> None:
        self.log.append("setup")

    def write_batch(self, envelopes: Sequence[Envelope],
                    offsets: Sequence[int] | None = None) -> dict[str, int]:
        if self.fail:
            self.log.append("write failed")
            raise self.fail.pop(0)
        self.log.append("write")
        self.batches.append([env.event_id for env in envelopes])
        return {"submissions": len(envelopes)}

    def close(self) -> None:
        self.log.append("close")


@dataclass
class FakeConsumer:
    """Hands out the queued batches, then nothing, then sets ``stop``; ``commit`` raises the
    queued errors first and records the offset it was given (one partition, assigned
    throughout)."""

    log: list[str]
    stop: threading.Event
    batches: list[list[FakeMessage]] = field(default_factory=list)
    fail: list[KafkaError] = field(default_factory=list)
    consumed: int = 0
    committed: list[int] = field(default_factory=list)
    drained: bool = False
    revoke_at: int | None = None
    """Revoke the partitions in the consume() call after this many records."""
    callbacks: dict[str, Any] = field(default_factory=dict)
    paused: bool = False
    held_polls: int = 0
    """consume() calls while paused (a sink holding its partitions)."""

    def pause(self, partitions: list[TopicPartition]) -> None:
        if not self.paused:
            self.log.append("pause")
        self.paused = True

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.log.append("resume")
        self.paused = False

    def seek(self, partition: TopicPartition) -> None:
        self.log.append(f"seek {partition.offset}")

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        if self.paused:
            # The first poll of a hold finds a record fetched before the pause; a seek puts
            # it back (the sink must rewind it, not take it).
            self.held_polls += 1
            if self.held_polls == 1 and self.batches:
                batch = self.batches.pop(0)
                self.batches.insert(0, batch)
                return batch[:1]
            return []
        if self.revoke_at == self.consumed:  # a rebalance served inside this call
            self.log.append("revoke")
            self.callbacks["on_revoke"](self, self.assignment())
            self.log.append("revoked")
        if not self.batches:
            # The poll after the last batch finds nothing (the service settles that batch);
            # the one after it stops the service.
            if self.drained:
                self.stop.set()
            self.drained = True
            return []
        batch = self.batches.pop(0)
        self.consumed += len(batch)
        return batch

    def poll(self, timeout: float) -> FakeMessage | None:
        return None  # every batch is handed out by consume()

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t.evaluation.requests", 2)]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.consumed) for tp in partitions]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return (0, self.consumed + sum(len(b) for b in self.batches))

    def commit(self, offsets: list[TopicPartition] | None = None,
               asynchronous: bool = True) -> None:
        assert not asynchronous and offsets is not None
        if self.fail:
            self.log.append("commit failed")
            raise KafkaException(self.fail.pop(0))
        self.log.append("commit")
        (offset,) = [tp.offset for tp in offsets]
        self.committed.append(offset)

    def close(self) -> None:
        pass


class NullProducer:
    """The dead-letter producer's client, for batches without dead letters."""

    def flush(self, timeout: float) -> int:
        return 0


class WatchedStop(threading.Event):
    """A stop event whose waits return at once, recording the service's health and the delay
    asked for (a backoff is never slept through in these tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.service: SinkService | None = None
        self.waits: list[tuple[float, Health]] = []
        self.stop_at_wait: int | None = None

    def wait(self, timeout: float | None = None) -> bool:
        assert self.service is not None and timeout is not None
        self.waits.append((timeout, self.service.health()))
        if self.stop_at_wait == len(self.waits):
            self.set()
        return self.is_set()


@dataclass
class Rig:
    service: SinkService
    writer: FakeWriter
    consumer: FakeConsumer
    stop: WatchedStop
    metrics: SinkMetrics
    log: list[str]

    def run(self) -> None:
        self.service.start()
        try:
            self.service.run(self.stop)
        finally:
            self.service.close()

    def retries(self, step: str) -> float:
        return self.metrics.retries.labels(step)._value.get()


def _rig(batches: list[list[FakeMessage]], *, write_fails: Sequence[Exception] = (),
         commit_fails: Sequence[KafkaError] = (), writer: FakeWriter | None = None,
         keepalive_s: float = 5.0) -> Rig:
    log: list[str] = writer.log if writer is not None else []
    stop = WatchedStop()
    writer = writer or FakeWriter(log, list(write_fails))
    consumer = FakeConsumer(log, stop, batches, list(commit_fails))
    kafka = KafkaSettings(SPEECHSTREAM_TOPIC_PREFIX="t.")
    metrics = SinkMetrics.create(CollectorRegistry())
    service = SinkService(
        kafka, SinkSettings(), writer, metrics=metrics, consumer=consumer,  # type: ignore[arg-type]
        dead_letters=EventProducer(kafka, client=NullProducer()),  # type: ignore[arg-type]
        keepalive_s=keepalive_s,
    )
    stop.service = service
    return Rig(service, writer, consumer, stop, metrics, log)


def _batch(*event_ids: str, first: int = 0) -> list[FakeMessage]:
    return [request_message(request_envelope(event_id=e), _offset=i)
            for i, e in enumerate(event_ids, start=first)]


def test_a_lost_database_connection_is_waited_for_and_the_batch_written_once() -> None:
    rig = _rig([_batch("a", "b"), _batch("c", first=2)], write_fails=[_not_written(LOST)] * 3)
    rig.run()
    assert rig.writer.batches == [["a", "b"], ["c"]]
    assert rig.log == ["setup", "write failed", "write failed", "write failed", "write",
                       "commit", "write", "commit", "close"]
    assert rig.consumer.committed == [2, 3]
    # Degraded while it waited (0.5 s doubling), with the reason and the retries so far ...
    assert [delay for delay, _ in rig.stop.waits] == [0.5, 1.0, 2.0]
    assert {(h.healthy, h.status) for _, h in rig.stop.waits} == {(False, "degraded")}
    assert [h.details["retries"] for _, h in rig.stop.waits] == [0, 1, 2]
    first = rig.stop.waits[0][1].details
    assert first["step"] == "write" and "server closed the connection" in first["reason"]
    assert first["since"] and first["written"] == 0
    # ... and ok once the batch was written, the retries counted.
    assert rig.service.health().status == "ok" and rig.service.health().healthy
    assert rig.service.written == 3
    assert rig.retries("write") == 3 and rig.retries("commit") == 0


@pytest.mark.parametrize("code", [KafkaError.NOT_COORDINATOR,
                                  KafkaError.COORDINATOR_LOAD_IN_PROGRESS])
def test_a_commit_refused_while_the_broker_restarts_is_tried_again(code: int) -> None:
    rig = _rig([_batch("a", "b")], commit_fails=[KafkaError(code), KafkaError(code)])
    rig.run()
    assert rig.log == ["setup", "write", "commit failed", "commit failed", "commit", "close"]
    assert rig.writer.batches == [["a", "b"]]
    assert rig.consumer.committed == [2]
    assert [h.details["step"] for _, h in rig.stop.waits] == ["commit", "commit"]
    assert rig.retries("commit") == 2 and rig.retries("write") == 0
    assert rig.service.health().status == "ok"


def test_offsets_the_group_took_away_are_left_to_the_replay() -> None:
    rig = _rig([_batch("a"), _batch("b", first=1)],
               commit_fails=[KafkaError(KafkaError.UNKNOWN_MEMBER_ID)])
    rig.run()
    assert rig.log == ["setup", "write", "commit failed", "write", "commit", "close"]
    assert rig.consumer.committed == [2]
    assert rig.stop.waits == []


def test_each_batch_commits_its_own_offsets_after_its_write() -> None:
    # The second batch is consumed while the first is written; the first commit is the
    # first batch's offset, not the consumer's position.
    rig = _rig([_batch("a", "b"), _batch("c", first=2), _batch("d", first=3)])
    rig.run()
    assert rig.log == ["setup", "write", "commit", "write", "commit", "write", "commit",
                       "close"]
    assert rig.consumer.committed == [2, 3, 4]
    assert rig.writer.batches == [["a", "b"], ["c"], ["d"]]


def test_partitions_revoked_while_a_batch_is_written_get_its_offsets_first() -> None:
    rig = _rig([_batch("a"), _batch("b", first=1)])
    rig.consumer.revoke_at = 1
    rig.run()
    # The first batch's write runs beside the poll that revokes; its commit comes inside
    # the revocation, before the partitions go.
    revoke = rig.log.index("revoke")
    assert rig.log[revoke:revoke + 3] == ["revoke", "commit", "revoked"]
    assert rig.log.index("write") < rig.log.index("commit")
    assert rig.log[revoke + 3:] == ["write", "commit", "close"]
    assert rig.consumer.committed == [1, 2]
    assert rig.writer.batches == [["a"], ["b"]]


def test_a_fatal_database_error_ends_the_sink_without_committing() -> None:
    missing = psycopg.errors.UndefinedTable('relation "scores" does not exist')
    rig = _rig([_batch("a")], write_fails=[_not_written(missing)])
    with pytest.raises(SinkError, match="scores"):
        rig.run()
    assert rig.log == ["setup", "write failed", "close"]
    assert rig.consumer.committed == [] and rig.stop.waits == []


def test_a_fatal_error_after_transient_ones_still_ends_the_sink() -> None:
    fails = [_not_written(LOST), _not_written(psycopg.errors.InvalidPassword("password"))]
    rig = _rig([_batch("a")], write_fails=fails)
    with pytest.raises(SinkError, match="password"):
        rig.run()
    assert rig.consumer.committed == [] and len(rig.stop.waits) == 1


def test_a_fatal_commit_error_ends_the_sink() -> None:
    rig = _rig([_batch("a")], commit_fails=[KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED)])
    with pytest.raises(ConsumeError, match="committing offsets failed"):
        rig.run()
    assert rig.writer.batches == [["a"]] and rig.consumer.committed == []


def test_stopping_while_it_waits_leaves_the_batch_to_the_next_start() -> None:
    rig = _rig([_batch("a"), _batch("b")], write_fails=[_not_written(LOST)] * 5)
    rig.stop.stop_at_wait = 2
    rig.run()
    assert rig.writer.batches == [] and rig.consumer.committed == []
    assert rig.log == ["setup", "write failed", "write failed", "close"]


def test_the_backoff_is_capped() -> None:
    rig = _rig([_batch("a")], write_fails=[_not_written(LOST)] * 7)
    rig.run()
    assert [delay for delay, _ in rig.stop.waits] == [0.5, 1, 2, 4, 8, 10, 10]


def test_the_running_sink_is_a_static_member_and_a_rebuild_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SPEECHSTREAM_SINK_INSTANCE_ID", raising=False)
    settings = SinkSettings(session_timeout_ms=12_000)
    assert settings.instance_id == f"sink-{socket.gethostname()}"
    topics = sink_topics(KafkaSettings())
    run = consumer_overrides(settings, until_caught_up=False, topics=topics)
    assert run["group.instance.id"] == static_member_id(settings.instance_id, topics)
    assert run["group.instance.id"].startswith(f"{settings.instance_id}.")
    # Another topic list, another member (a static member keeps its old assignment):
    # the same list in any order, the same member.
    assert static_member_id("s", ["a", "b"]) == static_member_id("s", ["b", "a"])
    assert static_member_id("s", ["a", "b"]) != static_member_id("s", ["a"])
    assert run["session.timeout.ms"] == 12_000
    rebuild = consumer_overrides(settings, until_caught_up=True)
    assert "group.instance.id" not in rebuild


def test_the_instance_id_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEECHSTREAM_SINK_INSTANCE_ID", "sink-b")
    assert SinkSettings().instance_id == "sink-b"


@dataclass
class FakeConnection:
    closed: bool = False
    broken: bool = False

    def close(self) -> None:
        self.closed = True


def test_the_writer_replaces_a_broken_connection_until_a_new_one_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = PostgresWriter("postgresql://nowhere")
    dead, fresh = FakeConnection(broken=True), FakeConnection()
    refused = _not_written(psycopg.OperationalError("Connection refused"))
    outcomes: list[FakeConnection | SinkError] = [refused, fresh]

    def open_() -> None:
        outcome = outcomes.pop(0)
        if isinstance(outcome, SinkError):
            raise outcome
        sink._conn = outcome  # type: ignore[assignment]

    monkeypatch.setattr(sink, "_open", open_)
    sink._conn = dead  # type: ignore[assignment]
    with pytest.raises(SinkError, match="refused"):
        sink._live_connection()
    assert dead.closed
    assert sink._live_connection() is fresh
    assert sink._live_connection() is fresh and outcomes == []


@dataclass
class StuckWriter(FakeWriter):
    """Its first write waits until the sink has held its partitions ``polls`` times (as a
    write waits out a rebuild's swap, or the database away)."""

    consumer: FakeConsumer | None = None
    polls: int = 3

    def write_batch(self, envelopes: Sequence[Envelope],
                    offsets: Sequence[int] | None = None) -> dict[str, int]:
        if not self.batches:
            deadline = time.monotonic() + 10
            while self.consumer is not None and self.consumer.held_polls < self.polls:
                assert time.monotonic() < deadline, "the sink never held its partitions"
                time.sleep(0.005)
        return super().write_batch(envelopes, offsets)


def test_a_write_that_waits_keeps_the_sink_in_its_group_and_takes_nothing() -> None:
    log: list[str] = []
    writer = StuckWriter(log)
    rig = _rig([_batch("a", "b"), _batch("c", first=2), _batch("d", first=3)], writer=writer,
               keepalive_s=0.01)
    writer.consumer = rig.consumer
    rig.run()
    # Paused and polled while the first batch was written (max.poll.interval.ms never
    # passes), the record fetched before the pause rewound, not taken; resumed after.
    assert rig.consumer.held_polls >= 3
    assert log.index("pause") < log.index("seek 3") < log.index("resume") < log.index("commit")
    assert rig.writer.batches == [["a", "b"], ["c"], ["d"]]  # nothing lost, nothing twice
    assert rig.consumer.committed == [2, 3, 4]


FENCED = KafkaError(KafkaError.FENCED_INSTANCE_ID)


def _renewable(rig: Rig, monkeypatch: pytest.MonkeyPatch,
               batches: list[list[FakeMessage]]) -> list[FakeConsumer]:
    """The consumers the sink creates when it renews its own: each serves ``batches`` (what
    the group's committed offsets give it again)."""
    created: list[FakeConsumer] = []

    def new_consumer(config: dict[str, Any]) -> FakeConsumer:
        assert config["group.instance.id"].startswith(SinkSettings().instance_id)
        rig.log.append("new consumer")
        created.append(FakeConsumer(rig.log, rig.stop, [list(b) for b in batches]))
        return created[-1]

    monkeypatch.setattr("speechstream.kafka.consumer.Consumer", new_consumer)
    return created


def test_a_fencing_after_the_broker_failed_it_renews_the_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The commit is refused while the coordinator loads, then fenced: the session expired in
    # the outage, the consumer rejoined under its instance id, and the retried commit went out
    # under the old member id.
    rig = _rig([_batch("a", "b")], commit_fails=[
        KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS), FENCED])
    created = _renewable(rig, monkeypatch, [_batch("a", "b"), _batch("c", first=2)])
    rig.run()
    assert rig.log == ["setup", "write", "commit failed", "commit failed", "new consumer",
                       "write", "commit", "write", "commit", "close"]
    # Nothing committed under the fenced consumer; the new one, subscribed with the same
    # callbacks, reads the batch again (written again, idempotently) and commits.
    assert rig.consumer.committed == []
    assert len(created) == 1 and created[0].committed == [2, 3]
    assert set(created[0].callbacks) == set(rig.consumer.callbacks) == {"on_revoke", "on_lost"}
    assert rig.writer.batches == [["a", "b"], ["a", "b"], ["c"]]
    assert rig.metrics.renewals._value.get() == 1
    assert rig.service.health().status == "ok"


def test_a_fencing_out_of_the_blue_is_a_second_sink_and_ends_this_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = _rig([_batch("a")], commit_fails=[FENCED])
    created = _renewable(rig, monkeypatch, [])
    with pytest.raises(ConsumeError, match="is a second sink running with "
                                           "SPEECHSTREAM_SINK_INSTANCE_ID=sink-"):
        rig.run()
    assert created == [] and rig.metrics.renewals._value.get() == 0


def test_a_fenced_poll_after_the_broker_failed_it_renews_the_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # While the broker was away the poll reported it (a transport error); then the fencing.
    rig = _rig([[FakeMessage(None, _error=KafkaError(KafkaError._TRANSPORT))],
                [FakeMessage(None, _error=KafkaError(KafkaError._FATAL, fatal=True))]])
    created = _renewable(rig, monkeypatch, [_batch("a")])
    rig.run()
    assert rig.log == ["setup", "new consumer", "write", "commit", "close"]
    assert created[0].committed == [1] and rig.writer.batches == [["a"]]


def test_a_fencing_after_the_client_reported_the_broker_away_renews_the_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # librdkafka reports a broker away through the client's error_cb (every 10 s while all
    # brokers are down), not through a poll; the fencing comes with the first request after.
    rig = _rig([[FakeMessage(None, _error=KafkaError(KafkaError._FATAL, fatal=True))]])
    created = _renewable(rig, monkeypatch, [_batch("a")])
    rig.service._consumer.on_client_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    rig.run()
    assert rig.log == ["setup", "new consumer", "write", "commit", "close"]
    assert created[0].committed == [1] and rig.metrics.renewals._value.get() == 1
