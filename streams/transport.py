"""The intake worker's Faust transport: aiokafka's, with a consumer that reads only committed
records and a fetch wait that is a setting.

Faust's aiokafka driver reads ``read_uncommitted`` unless the app itself runs exactly-once,
so a record of an aborted transaction (an evaluator's FAILED outcome, rolled back and
evaluated again) would reach the agents. This transport is Faust's own with the worker
consumer's isolation level set to ``read_committed``; the records of non-transactional
producers are unaffected. It is registered with Faust under the ``speechstream`` URL scheme
(the ``faust.transports`` entry point in ``pyproject.toml``); ``streams.app`` uses it.

Faust also hard-codes the worker consumer's ``fetch_max_wait_ms=1500``; this transport sets
the app's ``fetch_max_wait_ms`` (``SPEECHSTREAM_STREAMS_FETCH_MAX_WAIT_MS``, 1500 unless set)
instead. What a shorter wait did (nothing measurable) is in ``docs/latency.md``.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as driver

SCHEME = "speechstream"


class CommittedConsumerThread(driver.AIOKafkaConsumerThread):
    """Faust's consumer thread, its worker consumer reading committed records only."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Both are read by the consumer's start(), when it builds its fetcher.
        consumer._isolation_level = "read_committed"
        fetch_max_wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if fetch_max_wait_ms is not None:
            consumer._fetch_max_wait_ms = int(fetch_max_wait_ms)
        return consumer


class Consumer(driver.Consumer):
    """Faust's aiokafka consumer with :class:`CommittedConsumerThread`."""

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return CommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    """Faust's aiokafka transport with :class:`Consumer`."""

    Consumer = Consumer
