"""The intake worker's transport: the worker consumer Faust builds, as this project sets it."""

from __future__ import annotations

import asyncio
import logging

import faust
import pytest
from faust.types import TP

from speechstream.settings import KafkaSettings
from streams.app import create_app
from streams.settings import StreamsSettings
from streams.transport import CommittedConsumerThread
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


def test_resuming_the_flow_reads_the_stream_partitions_again_from_their_commits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The flow's resume empties the streams' queues; whatever was fetched into them is read
    # again: the stream partitions taking records are paused, sought back to their committed
    # offsets, then resumed. Changelog partitions are left alone.
    app = create_app(KafkaSettings(), StreamsSettings())
    consumer = app.consumer
    stream, other, changelog = TP("t.submissions", 1), TP("t.submissions", 2), TP(
        "t.speechstream-intake-repo_holder-changelog", 1)
    monkeypatch.setattr(consumer, "_is_changelog_tp", lambda tp: tp is changelog)
    monkeypatch.setattr(consumer, "assignment", lambda: {stream, other, changelog})
    seen: list[set[TP]] = []

    async def perform_seek() -> None:
        seen.append(set(consumer._get_active_partitions()))  # what takes records meanwhile
        await asyncio.sleep(0)

    monkeypatch.setattr(consumer, "perform_seek", perform_seek)

    async def resume() -> tuple[set[TP], set[TP]]:
        consumer._set_active_tps({stream, other, changelog})
        consumer.pause_partitions({other})  # paused (by a rebalance): left paused
        consumer.resume_flow()
        during = set(consumer._get_active_partitions())
        await consumer._reseek
        return during, set(consumer._get_active_partitions())

    during, after = asyncio.run(resume())
    assert during == {changelog} and seen == [{changelog}]
    assert after == {stream, changelog} and consumer.reseeks == 1


def test_a_rebalance_during_the_seek_leaves_the_partitions_to_its_recovery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = create_app(KafkaSettings(), StreamsSettings())
    consumer = app.consumer
    stream = TP("t.submissions", 1)
    monkeypatch.setattr(consumer, "_is_changelog_tp", lambda tp: False)
    monkeypatch.setattr(consumer, "assignment", lambda: {stream})

    async def perform_seek() -> None:
        app.consumer_generation_id += 1  # a rebalance while seeking

    monkeypatch.setattr(consumer, "perform_seek", perform_seek)

    async def resume() -> set[TP]:
        consumer._set_active_tps({stream})
        consumer.resume_flow()
        await consumer._reseek
        return set(consumer._get_active_partitions())

    assert asyncio.run(resume()) == set()  # paused until the new generation's recovery
