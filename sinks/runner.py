"""The sink as a service: Kafka (read_committed) → PostgreSQL, offsets after the database commit.

``speechstream sink run`` runs it until stopped; ``speechstream sink rebuild`` runs it with a
fresh group until every partition is drained. A database or broker that is away for a while
(a restart) is waited for, see :meth:`SinkService.run`; ``docs/operations.md`` tells the story.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from confluent_kafka import Consumer, Message, TopicPartition

from schemas.codec import dead_letter
from sinks.base import Prepared, SinkWriter
from sinks.faults import Backoff, Fault, classify, is_poison
from sinks.metrics import SinkMetrics
from sinks.settings import SinkSettings
from speechstream.exceptions import ConsumeError, SpeechstreamError
from speechstream.kafka.consumer import Batch, EventConsumer, is_fencing
from speechstream.kafka.lag import Lag, lag_of
from speechstream.kafka.producer import EventProducer
from speechstream.kafka.records import (
    KEPT_IN_PLACE,
    Verify,
    count_dead_letters,
    expect_dead_letters,
)
from speechstream.monitoring import Health
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer

log = logging.getLogger(__name__)
CONSUMER_NAME = "speechstream-sink"
MAX_REASON = 1000
T = TypeVar("T")
GC_THRESHOLDS = (100_000, 50, 100)
SWITCH_INTERVAL_S = 0.0005
KEEPALIVE_S = 5.0
"""How often a sink whose write waits holds its partitions (well inside the consumer's
``max.poll.interval.ms``, 300 s by default)."""


def tune_interpreter() -> None:
    """Tune this process for the sink; its commands call it once, before the service starts.

    What was there at start-up (modules, pydantic's validators) is frozen out of the garbage
    collector, and the collector runs after every 100,000 allocations instead of 700: a batch
    holds tens of thousands of objects, and each collection walked them all. The writer thread
    gets the GIL back within 0.5 ms (instead of 5 ms) after each database round trip while the
    consuming thread decodes. Together: about 1.3 × the sink's rate (``bench.sink``).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def sink_topics(kafka: KafkaSettings) -> list[str]:
    """Every topic the sink materializes."""
    t = kafka.topics
    return [t.miners, t.rejected, t.evaluation_requests, t.evaluation_status, t.scores,
            t.cancellations, t.audits, t.audio, t.weights, t.minerboard, t.scoring_active,
            t.deadletter]


def static_member_id(instance_id: str, topics: Sequence[str]) -> str:
    """``<instance id>.<8 hex of the subscription>``: the broker hands a static member that
    rejoins under a known id its old assignment, whatever it subscribes to now (a sink
    upgraded to read one topic more would never get that topic's partitions); under a new id
    it joins as a new member, and its predecessor's partitions come to it once that session
    expires (``session.timeout.ms``, once per change of the topic list)."""
    digest = hashlib.sha256("\n".join(sorted(topics)).encode()).hexdigest()[:8]
    return f"{instance_id}.{digest}"


def consumer_overrides(settings: SinkSettings, *, until_caught_up: bool,
                       topics: Sequence[str] = ()) -> dict[str, Any]:
    """The sink consumer's configuration: read_committed, offsets committed by hand.

    The running sink is a static member of its group (``group.instance.id``, named after its
    instance id and ``topics``: :func:`static_member_id`): a restarted sink takes its
    partitions back at once instead of waiting out its predecessor's session
    (``session.timeout.ms``). A rebuild, in a fresh group each time, joins as a dynamic one.
    """
    config: dict[str, Any] = {
        "group.id": settings.group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": until_caught_up,
        "session.timeout.ms": settings.session_timeout_ms,
        "max.poll.interval.ms": settings.max_poll_interval_ms,
    }
    if not until_caught_up:
        config["group.instance.id"] = static_member_id(settings.instance_id, topics)
    return config


@dataclass(frozen=True)
class Episode:
    """A step (``write`` or ``commit``) failing transiently, from its first failure on;
    ``retries``: how many times it was tried again (and failed) so far."""

    step: str
    reason: str
    since: datetime
    started: float
    """``time.monotonic()`` at the first failure."""
    retries: int = 0


@dataclass
class _Flight:
    """A batch handed to the writer: ``write`` is None when it holds nothing to write (only
    offsets to commit); ``started`` is ``time.perf_counter()`` when it was handed over."""

    batch: Batch
    write: Future[dict[str, int]] | None
    started: float


class _Stopped(Exception):  # noqa: N818 - control flow inside this module, never raised out
    """The stop event was set while a step waited to be tried again."""


class SinkService:
    """Consumes the registry's topics and writes them through ``writer`` in batches.

    Each batch is one database transaction; dead letters of undecodable records are delivered
    before its offsets are committed, synchronously, after it (see :meth:`run`: a crash
    replays at most the batch being written and the next one, idempotently). With
    ``until_caught_up`` it stops by itself once every assigned partition is drained (a
    rebuild). ``consumer`` and ``dead_letters`` replace the confluent consumer and the
    dead-letter producer (tests).

    A transient fault (see :func:`sinks.faults.classify`) while writing a batch or committing
    its offsets is retried with capped exponential backoff until that step succeeds; health
    reports ``degraded`` meanwhile. Writing again after a rolled-back transaction, or after
    one whose commit was never confirmed, changes nothing (the writes are idempotent). Any
    other error ends the service.
    """

    name = "sink"

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: SinkSettings,
        writer: SinkWriter,
        *,
        metrics: SinkMetrics,
        until_caught_up: bool = False,
        consumer: Consumer | None = None,
        dead_letters: EventProducer | None = None,
        verify: Verify | None = None,
        signer: Signer | None = None,
        keepalive_s: float | None = None,
    ) -> None:
        self._kafka = kafka
        self._keepalive_s = keepalive_s or min(KEEPALIVE_S, settings.max_poll_interval_ms / 4000)
        self._settings = settings
        self._writer = writer
        self._metrics = metrics
        expect_dead_letters(metrics.dead_letters, CONSUMER_NAME, KEPT_IN_PLACE)
        self._until_caught_up = until_caught_up
        self._consumer = EventConsumer(
            kafka, name=CONSUMER_NAME, topics=sink_topics(kafka),
            config=consumer_overrides(settings, until_caught_up=until_caught_up,
                                      topics=sink_topics(kafka)),
            client=consumer, logger=log, verify=verify,
            progress_window_s=None if until_caught_up else settings.progress_window_s,
        )
        self._dead_letters = dead_letters or EventProducer(kafka, signer=signer)
        self._backoff = Backoff(settings.retry_backoff_s, settings.retry_backoff_max_s)
        self._episode: Episode | None = None
        self._last_batch: float | None = None
        self._flight: _Flight | None = None
        self._stop: threading.Event | None = None
        """The running :meth:`run`'s stop event (for the revocation callback)."""
        self._halted = False
        self._started = False
        self._fenced: ConsumeError | None = None
        """A fencing of its own making, until the consumer is renewed."""
        self.written = 0
        """Events written so far."""

    def start(self) -> None:
        """Set the writer up (connect, check the schema), then subscribe."""
        self._writer.start()
        self._dead_letters.start()
        self._consumer.start(on_revoke=self._on_revoke)
        self._started = True

    def run(self, stop: threading.Event) -> None:
        """Consume and write batches until ``stop`` is set (or the topics are drained).

        Each batch is written in a thread of its own while this one polls and decodes the next
        (psycopg lets go of the GIL while PostgreSQL works). Once a batch's transaction has
        committed, its dead letters are flushed and its offsets (after its own records)
        committed, before the next batch is handed to the writer; partitions revoked meanwhile
        get theirs first. A crash replays the batch being written and the one decoded.
        """
        size, timeout = self._settings.batch_size, self._settings.batch_timeout_s
        self._stop = stop
        with ThreadPoolExecutor(1, thread_name_prefix="sink-writer") as pool:
            try:
                while not stop.is_set():
                    # While a batch is written, only what has been fetched already: its offsets
                    # are committed as soon as it is written, not after a wait for new records.
                    try:
                        batch = self._consumer.poll(size, 0 if self._flight else timeout)
                    except ConsumeError as exc:
                        self._fenced = self._fencing(exc)
                        batch = Batch()
                    self._last_batch = time.monotonic()
                    self._settle(stop)
                    if self._fenced is not None:
                        self._renew()
                        continue
                    if not self._hand_over(pool, batch, stop) and self._until_caught_up \
                            and self._consumer.drained():
                        break
                    del batch  # held by the writer; gone with it once written
                self._settle(stop)
            except _Stopped:
                return  # the batches are replayed at the next start, from the committed offsets
            except BaseException:
                self._halted = True  # a write waiting out a backoff gives up at its next try
                raise
            finally:
                self._stop = None

    def _hand_over(self, pool: ThreadPoolExecutor, batch: Batch, stop: threading.Event) -> bool:
        """Send the batch's dead letters and start writing it (its rows derived here, on the
        consuming thread); whether it holds anything to write. A batch that read records, if
        only undecodable dead letters kept in place, has offsets to commit either way."""
        for msg, letter in batch.dead_letters:
            self._dead_letters.send(self._kafka.topics.deadletter, letter, key=msg.key())
        if batch.kept:  # undecodable dead letters, kept in place
            self._metrics.dead_letters.labels(CONSUMER_NAME, KEPT_IN_PLACE).inc(batch.kept)
        if not batch.ends:
            return False
        envelopes = batch.envelopes
        write = None
        if envelopes or batch.dead_letters:
            prepared = self._writer.prepare(envelopes, [m.offset() for m in batch.messages])
            write = pool.submit(self._write, prepared, batch, stop)
        self._flight = _Flight(batch, write, time.perf_counter())
        return bool(envelopes or batch.dead_letters)

    def _write(self, prepared: Prepared, batch: Batch, stop: threading.Event
               ) -> dict[str, int]:
        """Write the batch (retrying transient faults); when a record's own values make it
        fail (:func:`sinks.faults.is_poison`), write it in halves instead, down to the poison
        records, which go to the dead letters with the reason: the batch's other rows land,
        in log order, and no record stops the sink."""
        try:
            return self._retrying("write", lambda: self._writer.write_prepared(prepared), stop)
        except SpeechstreamError as exc:
            if not is_poison(exc):
                raise
            log.warning("%s: a batch of %d records cannot be written (%s); writing it in parts "
                        "to set the poison records aside", self.name, len(batch.envelopes), exc)
        rows: dict[str, int] = {}
        pending = [list(zip(batch.envelopes, batch.messages, strict=True))]
        while pending:
            part = pending.pop()
            try:
                written = self._retrying("write", lambda part=part: self._writer.write_batch(
                    [env for env, _ in part], [msg.offset() for _, msg in part]), stop)
            except SpeechstreamError as exc:
                if not is_poison(exc):
                    raise
                if len(part) > 1:
                    half = len(part) // 2
                    pending += [part[half:], part[:half]]  # the first half first: log order
                else:
                    self._set_aside(part[0][1], exc, batch)
                continue
            for table, n in written.items():
                rows[table] = rows.get(table, 0) + n
        return rows

    def _set_aside(self, msg: Message, exc: SpeechstreamError, batch: Batch) -> None:
        """A record the database cannot hold: to the dead letters with the reason (one of the
        dead-letter topic itself stays where it is, logged)."""
        reason = f"the sink cannot store it: {exc}"
        if msg.topic() == self._kafka.topics.deadletter:
            log.error("%s: dead letter %s@%s kept in place: %s", self.name, msg.partition(),
                      msg.offset(), reason)
            self._metrics.dead_letters.labels(CONSUMER_NAME, KEPT_IN_PLACE).inc()
            return
        log.error("%s: %s/%s@%s set aside: %s", self.name, msg.topic(), msg.partition(),
                  msg.offset(), reason)
        letter = dead_letter(msg.value() or b"", reason[:MAX_REASON], topic=msg.topic(),
                             partition=msg.partition(), offset=msg.offset(),
                             consumer=CONSUMER_NAME)
        self._dead_letters.send(self._kafka.topics.deadletter, letter, key=msg.key())
        batch.dead_letters.append((msg, letter))

    def _settle(self, stop: threading.Event) -> None:
        """Wait for the batch being written (a write's error is raised here), then flush its
        dead letters and commit its offsets."""
        flight, self._flight = self._flight, None
        if flight is None:
            return
        batch = flight.batch
        rows = {} if flight.write is None else self._written(flight.write)
        if batch.dead_letters:
            self._dead_letters.flush()
            count_dead_letters(self._metrics.dead_letters,
                               (letter for _, letter in batch.dead_letters))
        offsets = batch.offsets()
        self._retrying("commit", lambda: self._commit(offsets), stop)
        self._metrics.batch_seconds.observe(time.perf_counter() - flight.started)
        for table, n in rows.items():
            self._metrics.rows.labels(table).inc(n)
        self.written += len(batch.envelopes)

    def _written(self, write: Future[dict[str, int]]) -> dict[str, int]:
        """The write's rows, once it is done. A write that waits (the database away, a rebuild's
        swap holding the tables) keeps the sink in its group meanwhile: every
        ``keepalive_s`` its partitions are held (paused and polled, nothing taken), so that
        ``max.poll.interval.ms`` never passes and its partitions stay its own."""
        try:
            while True:
                try:
                    return write.result(timeout=self._keepalive_s)
                except FutureTimeout:
                    rewound = self._consumer.hold()
                    if rewound:
                        log.debug("%s: %d fetched partition(s) rewound while holding",
                                  self.name, rewound)
        finally:
            if self._consumer.holding:
                self._consumer.release()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions go (or are lost): the batch being written is finished and its offsets
        committed first, while they are still assigned."""
        if self._flight is not None and self._stop is not None:
            self._settle(self._stop)

    def _commit(self, offsets: list[TopicPartition]) -> None:
        """Commit ``offsets``; after losing the partitions, or a fencing of its own making,
        leave them to be replayed."""
        try:
            self._consumer.commit(offsets)
        except ConsumeError as exc:
            if self._fenced is not None or is_fencing(exc):
                self._fenced = self._fencing(exc)
                return
            if classify(exc) is not Fault.LOST:
                raise
            log.warning("%s: offsets of a written batch not committed: %s; the partitions' "
                        "next owner writes it again (idempotently)", self.name, exc)

    def _fencing(self, exc: ConsumeError) -> ConsumeError:
        """``exc`` if it is a fencing the sink caused itself (the consumer is renewed when the
        batch in hand is settled); otherwise raised: another consumer joined under the sink's
        ``group.instance.id``, or the consumer failed for good."""
        if self._fenced is not None or self._consumer.fenced_by_itself(exc):
            return exc
        if is_fencing(exc):
            raise ConsumeError(
                f"{self.name}: fenced: another consumer joined its group under the same "
                f"group.instance.id; is a second sink running with SPEECHSTREAM_SINK_INSTANCE_ID="
                f"{self._settings.instance_id}? ({exc})") from exc
        raise exc

    def _renew(self) -> None:
        """Rejoin with a new consumer after a fencing of its own making: its session expired
        while the broker was away and it rejoined under its instance id, and a request still
        under the old member id (a commit retried meanwhile) was refused, which librdkafka
        makes fatal. What was written and not committed is written again, idempotently."""
        fenced, self._fenced = self._fenced, None
        log.warning("%s: its consumer was fenced after the broker had failed it (%s); "
                    "rejoining with a new one, from the committed offsets", self.name, fenced)
        self._consumer.renew()
        self._metrics.renewals.inc()

    def _retrying(self, step: str, call: Callable[[], T], stop: threading.Event) -> T:
        """``call()``, tried again after a backoff for as long as it fails transiently.

        The first failure of an episode is logged as a warning and turns health to
        ``degraded`` until the call succeeds; a fatal error is raised as it is; setting
        ``stop`` ends the wait (:class:`_Stopped`).
        """
        failures = 0
        while True:
            try:
                result = call()
            except SpeechstreamError as exc:
                if classify(exc) is not Fault.TRANSIENT:
                    raise
                failures += 1
                self._on_transient(step, exc, failures)
                if stop.wait(self._backoff.delay_s(failures)) or self._halted:
                    raise _Stopped from exc
                self._metrics.retries.labels(step).inc()
                continue
            if self._episode is not None:
                episode, self._episode = self._episode, None
                self._last_batch = time.monotonic()  # not stalled: it was waiting
                log.info("%s: %s succeeded after %d retries in %.1f s", self.name, step,
                         failures, time.monotonic() - episode.started)
            return result

    def _on_transient(self, step: str, exc: SpeechstreamError, failures: int) -> None:
        delay = self._backoff.delay_s(failures)
        if self._episode is None:
            self._episode = Episode(step, str(exc), datetime.now(UTC), time.monotonic())
            log.warning("%s: %s failed (%s); trying again in %.1f s, backing off up to %.1f s, "
                        "until it succeeds", self.name, step, exc, delay, self._backoff.cap_s)
        else:
            self._episode = replace(self._episode, step=step, reason=str(exc),
                                    retries=failures - 1)
            log.debug("%s: %s failed again (%s); next try in %.1f s", self.name, step, exc,
                      delay)

    def close(self) -> None:
        """Close the producer, the consumer and the writer."""
        try:
            self._dead_letters.close()
        finally:
            try:
                self._consumer.close()
            finally:
                self._writer.close()

    def lag(self) -> Iterable[Lag]:
        """Its consumer's lag (``speechstream_consumer_lag``)."""
        return lag_of([self._consumer])

    def consumers(self) -> list[EventConsumer]:
        """Its consumer (the age of the records it takes is observed)."""
        return [self._consumer]

    def health(self) -> Health:
        """Healthy while it polls (an empty poll returns within the batch timeout) and makes
        progress (:meth:`EventConsumer.stalled`); degraded while it waits for the database or
        the broker to come back."""
        episode = self._episode
        if episode is not None:
            return Health(False, "degraded", {
                "step": episode.step, "reason": episode.reason, "retries": episode.retries,
                "since": episode.since.isoformat(timespec="seconds"),
                "waiting_s": round(time.monotonic() - episode.started, 3),
                "written": self.written,
            })
        if not self._started or self._last_batch is None:
            return Health(False, "starting")
        stalled = self._consumer.stalled()
        if stalled is not None:
            return Health(False, "not progressing", {"reason": stalled, "written": self.written})
        age = time.monotonic() - self._last_batch
        healthy = age < max(30.0, 10 * self._settings.batch_timeout_s)
        return Health(healthy, "ok" if healthy else "stalled",
                      {"last_poll_age_s": round(age, 3), "written": self.written})
