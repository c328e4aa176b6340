"""The intake worker's Faust transport: aiokafka's, with a consumer that reads only committed
records and a fetch wait that is a setting.

Faust's aiokafka driver reads ``read_uncommitted`` unless the app itself runs exactly-once,
so a record of an aborted transaction (an evaluator's FAILED outcome, rolled back and
evaluated again) would reach the agents. This transport is Faust's own with the worker
consumer's isolation level set to ``read_committed``; the records of non-transactional
producers are unaffected. It is registered with Faust under the ``speechstream`` URL scheme
(the ``faust.transports`` entry point in ``pyproject.toml``); ``streams.app`` uses it.

Faust also hard-codes the worker consumer's ``fetch_max_wait_ms=1500``; this transport sets
the app's ``fetch_max_wait_ms`` (``SPEECHSTREAM_STREAMS_FETCH_MAX_WAIT_MS``, 100 unless set)
instead. What the wait does to a worker whose second agent reads what its first sends is in
``docs/latency.md``.

Its producer is :class:`LibrdkafkaProducer`: every record the worker sends (the agents' events
and the tables' changelogs) goes through one confluent-kafka (librdkafka) producer, which
batches and sends in librdkafka's own threads, instead of aiokafka's pure-Python record
batching on the event loop; Faust still flushes it, and a failed delivery fails the flush,
before it commits the offsets of the records that caused them. librdkafka never gives a
delivery up (a broker outage only makes the flush wait), except for a stopping worker.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Mapping
from typing import Any

import aiokafka
from confluent_kafka import KafkaError, Message
from confluent_kafka import Producer as RdProducer
from faust.exceptions import ProducerSendError
from faust.transport.drivers import aiokafka as driver
from faust.types import TP, HeadersArg, RecordMetadata

SCHEME = "speechstream"

logger = logging.getLogger(__name__)


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

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek every assigned partition to its committed offset, and each stream partition
        with none (or 0) to its beginning; the committed offsets, as aiokafka gives them.

        aiokafka's seek leaves a partition with no committed offset (or 0) where the fetch
        got to. After a rebalance the flow runs while the changelogs are recovered, so the
        records of such a stream partition fetched meanwhile reach a queue the recovery then
        empties, and the fetch goes on after them: a restarted worker skipped the first
        submission of a partition no worker had committed yet (`test_a_worker_killed_and_
        restarted_resumes_within_seconds`, 2 runs in 13, its debug log showing the record
        fetched during the recovery and never routed). The intake reads a new partition
        from its beginning (``consumer_auto_offset_reset``); changelog partitions are left
        where the recovery put them."""
        committed: Mapping[TP, int] = await super().seek_to_committed()
        changelogs = self.app.tables.changelog_topics
        unread = [tp for tp, offset in committed.items()
                  if not offset and tp.topic not in changelogs]
        if unread:
            await self.call_thread(self._ensure_consumer().seek_to_beginning, *unread)
        return committed


class Consumer(driver.Consumer):
    """Faust's aiokafka consumer with :class:`CommittedConsumerThread`, whose seek to the
    committed offsets after a rebalance stops the flow first (:meth:`perform_seek`); it notes
    when it last committed offsets (:attr:`committed_at`)."""

    committed_at: float | None = None
    """``time.monotonic()`` when offsets were last committed (None: not yet), read by the
    worker's health (not progressing: lag growing while nothing is committed)."""

    async def _commit_offsets(self, offsets: Mapping[TP, int],
                              start_new_transaction: bool = True) -> bool:
        committed = await super()._commit_offsets(offsets, start_new_transaction)
        if committed:
            self.committed_at = time.monotonic()
        return committed

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return CommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """Forget what the fetch loop kept of the assigned partitions from an earlier time
        it owned them, then assign as Faust does.

        Faust drops each partition's read offset, acknowledgements and gaps when the
        partition is revoked, but a record the fetch loop hands over while the revocation
        runs (or a seek that was under way) writes them again afterwards. When the worker
        gets the partition back, a read offset left from then makes the fetch loop drop
        every record below it as already seen: a changelog partition recovered from its
        start delivers nothing to the recovery, which waits for ever ("No event received
        for active tp ... since recovery start"), and a stream partition skips records.
        Nothing of a partition's earlier ownership is true of the new one: its records are
        read from the offsets the recovery and the seek to committed offsets set.
        """
        stale = {tp: self._read_offset[tp] for tp in assigned
                 if self._read_offset.get(tp) is not None}
        if stale:
            self.log.info("forgetting the read offsets of an earlier ownership of %d "
                             "assigned partitions: %s", len(stale), stale)
        for tp in assigned:
            self._read_offset.pop(tp, None)
            self._gap.pop(tp, None)
            self._acked.pop(tp, None)
            self._acked_index.pop(tp, None)
        await super().on_partitions_assigned(assigned, generation_id)

    async def perform_seek(self) -> None:
        """Seek every partition to its committed offset with the flow stopped; whoever
        asked for the seek resumes it.

        After a rebalance, Faust's recovery resumes the stream partitions, seeks them to
        their committed offsets and then resumes the flow, which empties every stream's
        queue. When the flow is already running (it was resumed to read the changelogs, or
        there was nothing to recover), records fetched while the seek waits on the broker
        reach the queues and move the read offsets; the seek sets the read offsets back, the
        queues are emptied, and the fetch goes on after what was emptied. The next record
        read then looks like a jump over offsets (as after a transaction's marker), which
        Faust counts as acknowledged, and the commit that follows passes records no agent
        saw: several workers lost consecutive submissions this way in a rebalance
        (``bench/rebalance.py``). With the flow stopped, nothing reaches a queue until the
        caller resumes the flow, after it emptied the queues.
        """
        active = self.flow_active
        self.stop_flow()
        await asyncio.sleep(0)  # a record being handed to a stream finishes first
        try:
            await super().perform_seek()
        except BaseException:
            if active:
                self.resume_flow()
            raise


BUFFER_FLUSH_LIMIT_S = 120.0
"""How long a flush waits for Faust's producer buffer to empty (the buffer waits only while
librdkafka's own queue is full)."""
DRAIN_STEP_S = 1.0
"""How long one wait for librdkafka's deliveries lasts before the drain looks again whether
the worker is stopping."""
STOP_DRAIN_LIMIT_S = 20.0
"""How long a stopping worker still waits for its records to be delivered (librdkafka itself
never gives a delivery up: ``streams.app``); past that, the flush fails and nothing is
committed."""
POLL_INTERVAL_S = 0.005
"""How often the producer serves its delivery reports while records are in flight (while
none are, its poller sleeps until the next send)."""


class LibrdkafkaProducer(driver.Producer):
    """Faust's producer sending through confluent-kafka; the aiokafka producer it extends is
    still started, for what Faust asks of it besides sending (creating topics, partitions).

    The librdkafka configuration is the app's ``librdkafka_producer_config`` (``streams.app``:
    idempotent, ``acks=all``, the Java client's murmur2 partitioner, so keys land where
    aiokafka put them). :meth:`send` returns a future resolved by the record's delivery
    report; :meth:`flush`, which Faust awaits before it commits offsets, returns once every
    record sent so far is delivered, and raises :class:`ProducerSendError` if any failed.
    Transactions (Faust's exactly-once mode, not used here) stay aiokafka's.
    """

    _rd: RdProducer | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _loop_thread: int | None = None
    _poller: asyncio.Task[None] | None = None
    _in_flight: asyncio.Event
    _failures: list[str]
    _buffer_sending = 0
    """Records Faust's buffer task has taken out of the buffer and not yet handed over."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        send_pending = self.buffer._send_pending

        async def counted(fut: Any) -> None:
            self._buffer_sending += 1
            try:
                await send_pending(fut)
            finally:
                self._buffer_sending -= 1

        # Read by the buffer's task when it starts, after this.
        self.buffer._send_pending = counted  # type: ignore[method-assign]

    async def on_start(self) -> None:
        """Start the aiokafka producer, then the librdkafka one and its delivery poller."""
        await super().on_start()
        self._failures = []
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._rd = RdProducer(dict(self.app.librdkafka_producer_config))
        self._in_flight = asyncio.Event()
        self._poller = self._loop.create_task(self._poll_deliveries())

    async def on_stop(self) -> None:
        """Send what Faust's buffer still holds and deliver what is in flight, then stop both
        producers."""
        if self._rd is not None:
            try:
                await self._empty_buffer()
                await self._drain()
            except ProducerSendError as exc:  # their events' offsets were not committed
                logger.error("stopping with records not delivered: %s", exc)
        if self._poller is not None:
            self._poller.cancel()
        self._rd = None
        await super().on_stop()

    async def _poll_deliveries(self) -> None:
        rd = self._rd
        assert rd is not None
        while True:
            if not len(rd):
                self._in_flight.clear()
                await self._in_flight.wait()
            await asyncio.sleep(POLL_INTERVAL_S)
            rd.poll(0)

    def _delivered(self, fut: asyncio.Future[RecordMetadata], err: KafkaError | None,
                   msg: Message) -> None:
        """A delivery report, served by ``poll`` on the event loop (or by ``flush`` in
        another thread, then handed to the loop)."""
        if threading.get_ident() != self._loop_thread:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._delivered, fut, err, msg)
            return
        if fut.done():
            return
        if err is not None:
            reason = f"{msg.topic()}: {err.str()}"
            self._failures.append(reason)
            fut.set_exception(ProducerSendError(f"Error while sending: {reason}"))
            return
        topic, partition = msg.topic(), msg.partition()
        assert topic is not None and partition is not None
        offset = msg.offset()
        fut.set_result(RecordMetadata(
            topic=topic, partition=partition, topic_partition=TP(topic, partition),
            offset=offset if offset is not None else -1,
            timestamp=msg.timestamp()[1] / 1000.0, timestamp_type=msg.timestamp()[0]))

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
        timestamp: float | None, headers: HeadersArg | None, *,
        transactional_id: str | None = None,
    ) -> Awaitable[RecordMetadata]:
        """Hand the record to librdkafka; the future resolves on its delivery report."""
        if transactional_id:
            return await super().send(topic, key, value, partition, timestamp, headers,
                                      transactional_id=transactional_id)
        rd = self._rd
        if rd is None:
            raise ProducerSendError("producer not started")
        if isinstance(headers, Mapping):
            headers = list(headers.items())
        self._send_on_produce_message(key=key, value=value, partition=partition,
                                      timestamp=timestamp, headers=headers)
        assert self._loop is not None
        fut: asyncio.Future[RecordMetadata] = self._loop.create_future()
        kwargs: dict[str, Any] = {"key": key, "value": value,
                                  "on_delivery": lambda err, msg: self._delivered(fut, err, msg)}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamp:
            kwargs["timestamp"] = int(timestamp * 1000.0)
        if headers:
            kwargs["headers"] = headers
        while True:
            try:
                rd.produce(topic, **kwargs)
                self._in_flight.set()
                break
            except BufferError:  # librdkafka's queue is full: let deliveries free it
                rd.poll(0)
                await asyncio.sleep(POLL_INTERVAL_S)
        return fut

    async def flush(self) -> None:
        """Return once every record sent so far is delivered, Faust's buffer emptied first;
        raise :class:`ProducerSendError` if a delivery failed since the last flush."""
        await self._empty_buffer()
        await super().flush()
        await self._drain()
        if self._failures:
            failures, self._failures = self._failures, []
            raise ProducerSendError(f"{len(failures)} records not delivered, first: "
                                    f"{failures[0]}")

    async def _empty_buffer(self) -> None:
        """Wait until Faust's producer buffer is empty: the tables' changelog records wait
        there (a table write is a synchronous ``__setitem__``) until its task sends them.

        Faust's own ``ProducerBuffer.flush`` returns as soon as one send takes longer than
        0.1 s, with records still waiting, and Faust then commits the offsets of the events
        that caused them: on a busy machine a worker killed after that commit lost changelog
        records (its successor rebuilt a table without them), and a worker that stopped
        gracefully dropped what the buffer still held. This waits for the buffer to empty,
        up to :data:`BUFFER_FLUSH_LIMIT_S`; past that the flush fails, so nothing is
        committed."""
        buffer = self.buffer
        deadline = time.monotonic() + BUFFER_FLUSH_LIMIT_S
        while buffer.size or self._buffer_sending:
            if time.monotonic() > deadline:
                raise ProducerSendError(f"{buffer.size} records still in the producer buffer "
                                        f"after {BUFFER_FLUSH_LIMIT_S:.0f} s")
            if buffer.size:
                await buffer.flush_atmost(None)
            else:  # the buffer's task has taken the last one and is sending it
                await asyncio.sleep(POLL_INTERVAL_S)

    async def _drain(self) -> None:
        """Wait until librdkafka has delivered every record sent so far.

        librdkafka never gives a delivery up (``message.timeout.ms`` is 0, ``streams.app``), so
        a broker away for minutes only makes this wait, and the offsets wait with it. A worker
        that is stopping waits at most :data:`STOP_DRAIN_LIMIT_S` more, then the flush fails:
        the offsets of the events behind the undelivered records stay uncommitted and those
        events are routed again after a restart."""
        rd = self._rd
        assert rd is not None and self._loop is not None
        stop_deadline: float | None = None
        while len(rd):
            await self._loop.run_in_executor(None, rd.flush, DRAIN_STEP_S)
            if not len(rd) or not self._stopping():
                continue
            now = time.monotonic()
            if stop_deadline is None:
                stop_deadline = now + STOP_DRAIN_LIMIT_S
            elif now > stop_deadline:
                raise ProducerSendError(f"{len(rd)} records not delivered within "
                                        f"{STOP_DRAIN_LIMIT_S:.0f} s of stopping")

    def _stopping(self) -> bool:
        return bool(self.should_stop or self.app.should_stop)


def worker_lag(app: Any) -> list[tuple[str, int, int]]:
    """``(topic, partition, records)`` past the worker consumer's position in each partition
    it owns (tables' changelogs included), against the end its last fetch saw: aiokafka's own
    bookkeeping, read without a broker request (from the metrics server's thread)."""
    try:
        aio = app.consumer._thread._consumer
        if aio is None:
            return []
        assignment = aio._fetcher._subscriptions.subscription.assignment
        found = []
        for tp in assignment.tps:
            state = assignment.state_value(tp)
            high = aio.highwater(tp)
            if state is not None and state.has_valid_position and high is not None:
                found.append((tp.topic, tp.partition, max(0, high - state.position)))
        return found
    except (AttributeError, RuntimeError):  # not started, or stopping
        return []


class Transport(driver.Transport):
    """Faust's aiokafka transport with :class:`Consumer` and :class:`LibrdkafkaProducer`."""

    Consumer = Consumer
    Producer = LibrdkafkaProducer
