"""The intake worker's transport: the worker consumer Faust builds, as this project sets it."""

from __future__ import annotations

import asyncio

from speechstream.settings import KafkaSettings, StreamsSettings
from streams.app import create_app
from streams.transport import CommittedConsumerThread


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
    assert StreamsSettings().fetch_max_wait_ms == 1500  # Faust's, unless set
