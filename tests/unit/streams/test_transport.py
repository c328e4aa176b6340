"""The intake worker's transport: the worker consumer Faust builds, as this project sets it."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import pytest
from aiokafka.structs import TopicPartition
from faust.exceptions import ProducerSendError
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

from speechstream.settings import KafkaSettings
from streams import transport
from streams.app import create_app
from streams.settings import StreamsSettings
from streams.transport import CommittedConsumerThread, LibrdkafkaProducer
from streams.worker import QuietWorker


def test_the_worker_consumer_reads_committed_records_and_fetches_within_the_setting() -> None:
    streams = StreamsSettings(fetch_max_wait_ms=25)
    app = create_app(KafkaSettings(), streams)
    thread = app.consumer._thread
    assert isinstance(thread, CommittedConsumerThread)

    async def build() -> tuple[str, int]:  # aiokafka builds its clients in a running loop
        consumer = thread._create_worker_consumer(app.transport)
        await consumer.stop()
        return consumer._isolation_level, consumer._fetch_max_wait_ms

    assert asyncio.run(build()) == ("read_committed", 25)
    assert StreamsSettings().fetch_max_wait_ms == 100  # not Faust's 1500, unless set


def test_the_worker_leaves_the_root_logger_at_its_level() -> None:
    """Faust's own worker sets the root logger to DEBUG for its terminal spinner; every debug
    call of Faust and aiokafka would then build a record. The intake worker's does not."""
    root = logging.getLogger()
    level = root.level
    try:
        stock = faust.Worker(create_app(KafkaSettings(), StreamsSettings()), quiet=True)
        stock.on_setup_root_logger(root, logging.WARNING)
        assert root.level == logging.DEBUG  # what this guards against
        root.setLevel(level)
        quiet = QuietWorker(create_app(KafkaSettings(), StreamsSettings()), quiet=True)
        quiet.on_setup_root_logger(root, logging.WARNING)
        assert root.level == level
    finally:
        root.setLevel(level)
        root.handlers = [h for h in root.handlers if type(h).__name__ != "SpinnerHandler"]



def test_the_seek_to_committed_offsets_stops_the_flow_and_leaves_it_to_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record fetched while the seek waits on the broker would reach a stream's queue, which
    the caller then empties, and the fetch would go on after it (a skipped record)."""
    consumer = create_app(KafkaSettings(), StreamsSettings()).consumer
    seen: list[bool] = []

    async def seek_to_committed() -> dict[TP, int]:
        seen.append(consumer.flow_active)
        return {TP("t.submissions", 0): 7}

    monkeypatch.setattr(consumer, "seek_to_committed", seek_to_committed)

    async def seek(active: bool) -> None:
        consumer.resume_flow() if active else consumer.stop_flow()
        await consumer.perform_seek()

    asyncio.run(seek(active=True))
    assert seen == [False] and not consumer.flow_active  # resumed by the caller, after it
    assert consumer._read_offset[TP("t.submissions", 0)] == 7  # the queues are emptied

    async def broken() -> dict[TP, int]:
        raise ConnectionError("the broker is away")

    monkeypatch.setattr(consumer, "seek_to_committed", broken)
    with pytest.raises(ConnectionError):
        asyncio.run(seek(active=True))
    assert consumer.flow_active  # a seek that failed leaves the flow as it found it


def test_a_stream_partition_with_no_committed_offset_is_read_from_its_beginning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka's seek to committed offsets leaves a partition with none (or 0) where the fetch
    got to: what was fetched during the recovery and emptied from the queues was skipped."""
    app = create_app(KafkaSettings(SPEECHSTREAM_TOPIC_PREFIX="t."), StreamsSettings())
    changelog = app.Table("repo_holder", default=str).changelog_topic.get_topic_name()
    thread = app.consumer._thread
    none, zero, five = (TopicPartition("t.submissions", i) for i in range(3))
    committed = {none: None, zero: 0, five: 5, TopicPartition(changelog, 0): None}

    async def aiokafkas(self: object) -> dict[TopicPartition, int | None]:
        return committed

    sought: list[TopicPartition] = []

    class Client:
        async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
            sought.extend(partitions)

    async def call_thread(method: Any, *args: Any) -> Any:
        return await method(*args)

    monkeypatch.setattr(driver.AIOKafkaConsumerThread, "seek_to_committed", aiokafkas)
    monkeypatch.setattr(thread, "_ensure_consumer", Client)
    monkeypatch.setattr(thread, "call_thread", call_thread)
    assert asyncio.run(thread.seek_to_committed()) == committed
    assert sought == [none, zero]  # the changelog stays where the recovery put it


def test_an_assignment_forgets_what_an_earlier_ownership_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read offset written again after the revocation (a record handed over while it ran)
    would make the fetch loop drop every record below it when the partition comes back: a
    changelog recovered from its start would deliver nothing to the recovery."""
    consumer = create_app(KafkaSettings(), StreamsSettings()).consumer
    changelog, kept = TP("app-repo_holder-changelog", 2), TP("t.submissions", 1)
    consumer._read_offset[changelog] = 48
    consumer._read_offset[kept] = 7
    consumer._acked[changelog].append(47)
    consumer._acked_index[changelog].add(47)
    seen: dict[str, object] = {}

    async def assigned(self: object, tps: set[TP], generation_id: int = 0) -> None:
        seen.update(read=dict(consumer._read_offset), acked=dict(consumer._acked),
                    generation=generation_id)

    monkeypatch.setattr(faust.transport.consumer.Consumer, "on_partitions_assigned", assigned)
    asyncio.run(consumer.on_partitions_assigned({changelog}, 5))
    assert seen == {"read": {kept: 7}, "acked": {}, "generation": 5}


class _Undelivered:
    """librdkafka's producer with records that stay undelivered (a broker away)."""

    def __init__(self, delivered_after: int | None = None) -> None:
        self.waits = 0
        self.delivered_after = delivered_after

    def __len__(self) -> int:
        return 0 if self.delivered_after is not None and self.waits >= self.delivered_after else 3

    def flush(self, timeout: float) -> int:
        self.waits += 1
        time.sleep(timeout)
        return len(self)


def _producer_with(rd: _Undelivered, monkeypatch: pytest.MonkeyPatch) -> LibrdkafkaProducer:
    monkeypatch.setattr(transport, "DRAIN_STEP_S", 0.01)
    monkeypatch.setattr(transport, "STOP_DRAIN_LIMIT_S", 0.1)
    producer = create_app(KafkaSettings(), StreamsSettings()).producer
    assert isinstance(producer, LibrdkafkaProducer)
    producer._rd = rd  # type: ignore[assignment]
    return producer


def test_a_running_worker_waits_out_an_outage_for_its_deliveries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A changelog record given up after 2 minutes of broker outage took the worker down: the
    drain waits as long as the records stay undelivered (here 50 steps, past the stop limit)."""
    rd = _Undelivered(delivered_after=50)
    producer = _producer_with(rd, monkeypatch)

    async def drain() -> None:
        producer._loop = asyncio.get_running_loop()
        await producer._drain()

    asyncio.run(drain())
    assert rd.waits == 50
    assert create_app(KafkaSettings(), StreamsSettings()).librdkafka_producer_config[
        "message.timeout.ms"] == 0


def test_a_stopping_worker_gives_undelivered_records_up_without_committing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rd = _Undelivered()
    producer = _producer_with(rd, monkeypatch)

    async def drain() -> None:
        producer._loop = asyncio.get_running_loop()
        producer.app._stopped.set()
        await producer._drain()

    with pytest.raises(ProducerSendError, match="3 records not delivered within 0 s of stopping"):
        asyncio.run(drain())
    assert 5 <= rd.waits < 100
