"""The one confluent-kafka consume loop: poll records, decode them or turn them into dead letters.

A service asks for a :class:`Batch`: the decoded envelopes, and the dead letters that replace
the undecodable records (the service publishes them, with its own delivery guarantee, before
the offset moves past them). A record of the dead-letter topic itself that
does not decode is never dead-lettered again: it stays where it is and is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client import Histogram

from schemas.codec import MAX_DEAD_LETTER_BYTES, MAX_EVENT_BYTES, MAX_VECTOR_BYTES
from schemas.envelope import Envelope
from speechstream.exceptions import ConsumeError, DecodeError
from speechstream.kafka.lag import Progress
from speechstream.kafka.records import Expected, Verify, dead_letter_for, decode_record
from speechstream.settings import KafkaSettings

Rebalance = Callable[[Consumer, list[TopicPartition]], None]
TIMEOUT_S = 30.0
CAUGHT_UP_RETRY_S = 0.5
LAG_REFRESH_S = 5.0
"""How often the polling thread recomputes the consumer's lag (:meth:`EventConsumer.lag`)."""
FENCED_CODES = frozenset({KafkaError.FENCED_INSTANCE_ID, KafkaError._FATAL})
"""A static member's fencing: the broker's answer, then librdkafka's for every later call (the
only fatal error of a librdkafka consumer is this one)."""
MIN_TROUBLE_WINDOW_S = 60.0
BROKER_WARNING_EVERY_S = 60.0
"""The most often a consumer logs librdkafka's reports of a failing broker as a warning."""
SMALL_PREFETCH: Mapping[str, Any] = MappingProxyType({
    "queued.max.messages.kbytes": 2048,
    "fetch.queue.backoff.ms": 10,
})
"""librdkafka's prefetch held to 2 MiB, for a consumer that takes one record at a time with
long work in between (an evaluator, an auditor) or reads a whole topic (a log reader). By
default a consumer fetches ahead up to 64 MiB (or 100,000 records) it has not taken yet, and
the allocator keeps that memory afterwards: a consumer assigned a backlog of 150,000 scores
held 83 MiB more after its first record; of 47 MiB, 58 MiB more, and 4 MiB with this
(``tests/integration/test_prefetch.py``). In the hour under faults, evaluators grew up to
37 % as the backlog of requests grew. The 10 ms backoff keeps reading fast: with
librdkafka's default (1 s), a full queue paused fetching for a second each time, and reading
150,000 scores took 25 s instead of 6 (6.1 s with this, 5.8 s unbounded)."""


@dataclass(slots=True)
class Batch:
    """What one poll brought: the decoded envelopes with their messages (in order), the dead
    letters that stand for the records that did not decode, and how many undecodable records
    of the dead-letter topic itself were left in place."""

    envelopes: list[Envelope] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    """The message of each envelope (same positions)."""
    dead_letters: list[tuple[Message, Envelope]] = field(default_factory=list)
    kept: int = 0
    ends: dict[tuple[str, int], int] = field(default_factory=dict)
    """(topic, partition) → the offset after the batch's last record there."""

    def __len__(self) -> int:
        return len(self.messages) + len(self.dead_letters) + self.kept

    def offsets(self) -> list[TopicPartition]:
        """The offsets to commit once the batch is done: after its last record in each
        partition it read from (decoded, dead-lettered or kept)."""
        return [TopicPartition(topic, partition, end)
                for (topic, partition), end in self.ends.items()]


class EventConsumer:
    """Consumes envelopes from ``topics`` with one consumer group.

    ``expected`` maps a topic to the payload class(es) it may carry (or gives one for every
    topic). ``config`` is added to the librdkafka configuration of ``kafka``; ``client``
    replaces the confluent consumer (tests). Nothing connects before :meth:`start`.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        name: str,
        topics: Sequence[str],
        config: Mapping[str, Any],
        expected: Mapping[str, Expected] | Expected | None = None,
        client: Consumer | None = None,
        logger: logging.Logger | None = None,
        verify: Verify | None = None,
        progress_window_s: float | None = None,
    ) -> None:
        self.name = name
        self.progress = Progress(progress_window_s) if progress_window_s else None
        """Whether it makes progress (:meth:`stalled`); None: not watched."""
        self._lag: list[tuple[str, int, int]] = []
        self._lag_at = 0.0
        self._lag_wanted = False
        self.record_age: Histogram | None = None
        """Observes each record's age when taken, by topic (set by :func:`export_lag`)."""
        self._ages: dict[str, Any] = {}
        self._verify = verify
        self.topics = list(topics)
        self._kafka = kafka
        self._config = dict(config)
        if isinstance(expected, Mapping):
            self._expected: dict[str, Expected] = dict(expected)
            self._expected_elsewhere: Expected | None = None
        else:
            self._expected, self._expected_elsewhere = {}, expected
        self._client = client
        self._admin: AdminClient | None = None
        self._unanswered = False  # the last caught_up() could not ask the broker
        self._log = logger or logging.getLogger(__name__)
        self._deadletter_topic = kafka.topics.deadletter
        # Dead letters carry raw bytes, so theirs may be larger than an event; a weights vector
        # names every uid of the subnet.
        self._max_bytes = {self._deadletter_topic: MAX_DEAD_LETTER_BYTES,
                           kafka.topics.weights: MAX_VECTOR_BYTES}
        self.at_end: set[tuple[str, int]] = set()
        """Partitions read to their end (with ``enable.partition.eof``) and not past it since."""
        self.holding = False
        """Between :meth:`hold` and :meth:`release`: its partitions paused."""
        self._callbacks: dict[str, Rebalance] = {}
        self._trouble_at: float | None = None
        """When it last saw the broker fail it (a transport error, a commit refused)."""
        self._troubled = False
        """Whether the broker failed it since its last commit that succeeded."""
        self._warned_at: float | None = None
        self.renewals = 0
        """How many times :meth:`renew` replaced the client."""

    @property
    def client(self) -> Consumer:
        """The confluent consumer; :class:`ConsumeError` before :meth:`start`."""
        if self._client is None:
            raise ConsumeError(f"{self.name}: the consumer is not started: call start() first")
        return self._client

    def start(
        self, *, on_revoke: Rebalance | None = None, on_assign: Rebalance | None = None,
        from_start: bool = False,
    ) -> EventConsumer:
        """Create the client (unless injected) and subscribe; ``on_revoke`` also sees losses;
        ``on_assign`` takes the assignment itself (``Consumer.incremental_assign``).

        ``from_start`` reads every partition of the topics from its first offset instead, with
        no consumer group (a service that rebuilds its state from the log at each start).
        """
        if self._client is None:
            self._client = self._new_client()
        if from_start:
            self._client.assign([
                TopicPartition(topic, partition, OFFSET_BEGINNING)
                for topic in self.topics for partition in self._partitions(topic)
            ])
            return self
        callbacks: dict[str, Rebalance] = {}
        if on_revoke is not None:
            callbacks.update(on_revoke=on_revoke, on_lost=on_revoke)
        if on_assign is not None:
            callbacks["on_assign"] = on_assign
        self._callbacks = callbacks
        self._client.subscribe(self.topics, **callbacks)
        return self

    def fenced_by_itself(self, exc: BaseException) -> bool:
        """Whether ``exc`` is this static member's fencing (``FENCED_INSTANCE_ID``, fatal in
        librdkafka) after the broker had failed it lately: its session expired while the
        broker was away, it rejoined under its ``group.instance.id``, and a request still
        under its old member id (a commit it was retrying) was refused. A fencing without
        such trouble is another consumer that joined under the same instance id.

        "Lately" is since its last commit that succeeded, or within twice the session timeout
        (at least a minute): librdkafka reports a broker that stays away once and then
        suppresses the identical errors, so the last report can be minutes old when the
        broker comes back.
        """
        if not is_fencing(exc):
            return False
        if "group.instance.id" not in self._config or self._trouble_at is None:
            return False
        if self._troubled:
            return True
        return time.monotonic() - self._trouble_at <= max(MIN_TROUBLE_WINDOW_S,
                                                          2 * self._session_s())

    def _session_s(self) -> float:
        return float(self._config.get("session.timeout.ms", 45_000)) / 1000

    def _note_trouble(self) -> None:
        self._trouble_at = time.monotonic()
        self._troubled = True

    def renew(self) -> None:
        """Replace the client (closed, as it is) with a new one subscribed as before, under
        the same configuration: a fenced consumer answers nothing but its fencing again. The
        new one starts from the group's committed offsets; what the old one took and did not
        commit is read again."""
        old, self._client = self._client, None
        if old is not None:
            try:
                old.close()
            except (KafkaException, RuntimeError) as exc:
                self._log.info("%s: closing the fenced consumer: %s", self.name, exc)
        self.at_end.clear()
        self.holding = False
        self._trouble_at, self._troubled = None, False
        self.renewals += 1
        self._client = self._new_client()
        self._client.subscribe(self.topics, **self._callbacks)

    def _new_client(self) -> Consumer:
        return Consumer(self._kafka.to_librdkafka(**{"error_cb": self.on_client_error,
                                                     **self._config}))

    def on_client_error(self, error: KafkaError) -> None:
        """librdkafka's report of a failing broker (``error_cb``, served by the polling
        thread): a transport error, all brokers down, a request timed out. They are trouble
        (:meth:`fenced_by_itself`). Without an ``error_cb`` librdkafka only logs them, and a
        poll never returns them: the sink could not tell a broker away for two minutes from
        no trouble at all, and ended on the fencing of its own rejoin (CI, test_long_outages).
        One a minute is logged as a warning, the rest at debug (librdkafka reports all
        brokers down every 10 s)."""
        now = time.monotonic()
        warn = self._warned_at is None or now - self._warned_at >= BROKER_WARNING_EVERY_S
        if warn:
            self._warned_at = now
        if not error.fatal():  # the fatal one (a fencing) is raised by the call that meets it
            self._note_trouble()
        self._log.log(logging.WARNING if warn else logging.DEBUG, "%s: broker: %s",
                      self.name, error.str())

    def _partitions(self, topic: str) -> list[int]:
        try:
            found = self.client.list_topics(topic, timeout=TIMEOUT_S).topics.get(topic)
        except KafkaException as exc:
            raise ConsumeError(f"{self.name}: no metadata for {topic}: {exc.args[0]}") from exc
        if found is None or found.error is not None or not found.partitions:
            raise ConsumeError(f"{self.name}: topic {topic} does not exist; create it with "
                               "`speechstream topics create`")
        return sorted(found.partitions)

    def poll(self, max_records: int, timeout_s: float) -> Batch:
        """Up to ``max_records`` records, each decoded or dead-lettered: those already fetched,
        or else (waiting up to ``timeout_s`` for the first) the first and those come with it.

        A fatal consumer error raises :class:`ConsumeError`; a transient one (broker down, a
        topic not yet created) is logged and retried by librdkafka itself.
        """
        client = self.client
        if max_records == 1:
            msg = client.poll(timeout_s)
            messages = [] if msg is None else [msg]
        else:
            # What has been fetched already, at once; otherwise wait for the first record and
            # take what came with it. consume(n, timeout) would wait for n records or the
            # whole timeout: at a trickle every record waited the timeout out (the sink's
            # 0.2 s, most of a submission's way to its row; docs/latency.md).
            messages = client.consume(max_records, 0)
            if not messages and timeout_s > 0:
                first = client.poll(timeout_s)
                if first is not None:
                    messages = [first, *client.consume(max_records - 1, 0)]
        if self._lag_wanted and time.monotonic() - self._lag_at >= LAG_REFRESH_S:
            self.refresh_lag()
        return self.decode(messages)

    def decode(self, messages: list[Message]) -> Batch:
        """The batch of consumed ``messages`` (see the module docstring)."""
        batch = Batch()
        envelopes, decoded, ends = batch.envelopes, batch.messages, batch.ends
        expected, elsewhere, limits = self._expected, self._expected_elsewhere, self._max_bytes
        now = time.time() if self.record_age is not None else None
        for msg in messages:  # every record passes here: keep the happy path short
            error = msg.error()
            if error is not None:
                self._on_error(msg, error)
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            ends[topic, partition] = offset + 1
            if now is not None:
                self._observe_age(msg, topic, now)
            if self.at_end:
                self.at_end.discard((topic, partition))
            try:
                envelopes.append(decode_record(
                    msg.value(), topic, partition, offset,
                    expected.get(topic, elsewhere), limits.get(topic, MAX_EVENT_BYTES),
                    self._verify,
                ))
            except DecodeError as exc:
                self._refuse(msg, exc, batch)
                continue
            decoded.append(msg)
        return batch

    def _observe_age(self, msg: Message, topic: str, now: float) -> None:
        """The time from the record's broker timestamp to now: its wait on this hop."""
        kind, stamp_ms = msg.timestamp()
        if kind == TIMESTAMP_NOT_AVAILABLE or self.record_age is None:
            return
        child = self._ages.get(topic)
        if child is None:
            child = self._ages[topic] = self.record_age.labels(self.name, topic)
        child.observe(max(0.0, now - stamp_ms / 1000))

    def _refuse(self, msg: Message, exc: DecodeError, batch: Batch) -> None:
        if msg.topic() == self._deadletter_topic:
            self._log.error("%s: undecodable dead letter %s@%s kept in place: %s",
                            self.name, msg.partition(), msg.offset(), exc.reason)
            batch.kept += 1
            return
        self._log.warning("%s: dead letter %s/%s@%s: %s", self.name, msg.topic(),
                          msg.partition(), msg.offset(), exc.reason)
        batch.dead_letters.append((msg, dead_letter_for(exc, consumer=self.name)))

    def _on_error(self, msg: Message, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            self.at_end.add((msg.topic(), msg.partition()))
        elif error.fatal() or error.code() in FENCED_CODES:
            raise ConsumeError(f"{self.name}: consumer failed: {error.str()}") \
                from KafkaException(error)
        else:
            self._note_trouble()
            self._log.warning("%s: consumer: %s", self.name, error)

    def lag(self) -> list[tuple[str, int, int]]:
        """``(topic, partition, records)`` past this consumer's position in each partition it
        owns, as :meth:`refresh_lag` last found it (at most every :data:`LAG_REFRESH_S`, by
        the thread that polls): safe from another thread (a metrics scrape, ``/health``),
        where a call into librdkafka could wait on a rebalance only the polling thread
        serves. The first call asks for it: nothing is computed for a consumer nobody
        watches."""
        self._lag_wanted = True
        return list(self._lag)

    def refresh_lag(self) -> None:
        """Recompute :meth:`lag` now, from the consumer's own bookkeeping: the partition's end
        as its last fetch saw it minus its position (no broker request). A partition it has
        not fetched from yet has no known position or end and is left out. Called by the
        thread that polls."""
        self._lag_at = time.monotonic()
        self._lag = self._read_lag()

    def _read_lag(self) -> list[tuple[str, int, int]]:
        client = self._client
        if client is None:
            return []
        try:
            positions = client.position(client.assignment())
            found = []
            for tp in positions:
                _low, high = client.get_watermark_offsets(tp, cached=True)
                if tp.offset >= 0 and high >= 0:
                    found.append((tp.topic, tp.partition, max(0, high - tp.offset)))
            return found
        except (KafkaException, RuntimeError):  # closed (a renewal) or not started
            return []

    def stalled(self) -> str | None:
        """Why it is not making progress (its lag grown over the progress window, nothing
        committed in it), or None (also when not watched)."""
        if self.progress is None:
            return None
        return self.progress.stalled(sum(records for _, _, records in self.lag()))

    def note_commit(self) -> None:
        """Offsets were committed (here, or elsewhere in a transaction): progress, and the
        broker serving it again."""
        self._troubled = False
        if self.progress is not None:
            self.progress.committed()

    @property
    def group(self) -> str:
        """Its consumer group (empty for a reader with none)."""
        return str(self._config.get("group.id", ""))

    def drained(self) -> bool:
        """Whether every assigned partition has been read to its end (needs partition EOF)."""
        assignment = self.client.assignment()
        return bool(assignment) and all(
            (tp.topic, tp.partition) in self.at_end for tp in assignment
        )

    def caught_up(self) -> bool:
        """Whether everything published to the assigned partitions so far has been read: each
        position has reached the end the broker reports now (the last stable offset, under
        read_committed), so a partition read to its end before a record arrived is not."""
        client = self.client
        assignment = client.assignment()
        if not assignment:
            return False
        if self._admin is None:
            self._admin = AdminClient(self._kafka.to_librdkafka())
        committed = self._config.get("isolation.level", "read_committed") == "read_committed"
        level = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
        self._unanswered = False
        try:
            ends = self._admin.list_offsets(
                {TopicPartition(tp.topic, tp.partition): OffsetSpec.latest()
                 for tp in assignment},
                isolation_level=level, request_timeout=TIMEOUT_S,
            )
            end = {(tp.topic, tp.partition): f.result().offset for tp, f in ends.items()}
            positions = client.position(assignment)
        except KafkaException as exc:
            # The admin client keeps the partition leaders' epochs it was first told: after a
            # broker restart every request of it is refused (FENCED_LEADER_EPOCH) for good.
            # The next call asks a new one, with fresh metadata.
            self._admin = None
            self._unanswered = True
            self._log.warning("%s: cannot tell whether it is caught up: %s", self.name,
                              exc.args[0])
            return False
        # A partition not read from yet has no position: caught up only while it is empty.
        return all(
            tp.offset >= end[tp.topic, tp.partition] if tp.offset >= 0
            else end[tp.topic, tp.partition] <= 0 or self._is_empty(tp)
            for tp in positions
        )

    def read_to_end(self, take: Callable[[Batch], None], limit_s: float) -> bool:
        """Poll and hand each batch to ``take`` until everything published so far has been
        read (:meth:`caught_up`) or ``limit_s`` has passed; whether it caught up."""
        deadline = time.monotonic() + limit_s
        while True:
            batch = self.poll(1000, 0.05)
            take(batch)
            if len(batch) == 0:
                if self.caught_up():
                    return True
                if self._unanswered:  # the broker did not answer: ask again in a while
                    time.sleep(CAUGHT_UP_RETRY_S)
            if time.monotonic() > deadline:
                self._log.warning("%s: still behind after %.0fs; going on", self.name, limit_s)
                return False

    def _is_empty(self, tp: TopicPartition) -> bool:
        # Asked of the broker: the cached watermarks of a partition not fetched from yet are
        # (-1001, -1001), which would read as empty (a new evaluator once took a score topic
        # it had not read yet for an empty one, and scored a submission again).
        low, high = self.client.get_watermark_offsets(tp, timeout=TIMEOUT_S, cached=False)
        return low >= high

    def commit(self, offsets: Sequence[TopicPartition] | None = None) -> None:
        """Commit ``offsets`` synchronously (those of partitions no longer assigned are left to
        their next owner), or else the positions of everything consumed so far."""
        client = self.client
        started = time.monotonic()
        try:
            if offsets is None:
                client.commit(asynchronous=False)
                self.note_commit()
                return
            owned = {(tp.topic, tp.partition) for tp in client.assignment()}
            mine = [tp for tp in offsets if (tp.topic, tp.partition) in owned]
            if not mine:  # nothing of it owned any longer: the broker was not asked
                if self.progress is not None:
                    self.progress.committed()
                return
            client.commit(offsets=mine, asynchronous=False)
            self.note_commit()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            fenced = isinstance(error, KafkaError) and error.code() in FENCED_CODES
            if not fenced or time.monotonic() - started >= self._session_s():
                # A refused commit is trouble; so is a fencing that answered a commit after it
                # had waited out a whole session: the broker was away meanwhile, and a
                # synchronous commit serves no callback, so the client's reports of it
                # (:meth:`on_client_error`) were still queued (CI, test_long_outages).
                self._note_trouble()
            raise ConsumeError(f"{self.name}: committing offsets failed: {exc.args[0]}") from exc

    def hold(self) -> int:
        """Stay in the group while the caller takes no records (a write waiting for the
        database): pause every partition it owns and poll, which serves the group's callbacks
        and resets ``max.poll.interval.ms``; a record that still arrives (fetched before the
        pause) is rewound, so nothing is taken. Call it at least once in that interval, and
        :meth:`release` after. How many records were rewound."""
        client = self.client
        if not self.holding:
            client.pause(client.assignment())
            self.holding = True
        rewound: set[tuple[str, int]] = set()
        for msg in client.consume(1000, 0):
            if msg.error() is None and (msg.topic(), msg.partition()) not in rewound:
                rewound.add((msg.topic(), msg.partition()))
                self.rewind(msg)
        client.pause(client.assignment())  # what a rebalance just assigned, too
        if self._lag_wanted and time.monotonic() - self._lag_at >= LAG_REFRESH_S:
            self.refresh_lag()
        return len(rewound)

    def release(self) -> None:
        """Resume the partitions :meth:`hold` paused (those it still owns)."""
        if self.holding:
            self.client.resume(self.client.assignment())
            self.holding = False

    def rewind(self, msg: Message) -> None:
        """Seek back to ``msg`` so that it is consumed again (if this consumer still owns it)."""
        try:
            self.client.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
        except KafkaException as exc:
            # Revoked meanwhile: its next owner starts from the committed offset, i.e. msg.
            self._log.info("%s: not rewinding %s/%s: %s", self.name, msg.partition(),
                           msg.offset(), exc)

    def close(self) -> None:
        """Close the client (leaves the group unless it is a static member)."""
        if self._client is not None:
            self._client.close()


def is_fencing(exc: BaseException) -> bool:
    """Whether ``exc`` (or the Kafka error it was raised from) is a static member's fencing."""
    for cause in (exc, exc.__cause__):
        if isinstance(cause, KafkaException) and cause.args:
            error = cause.args[0]
            return isinstance(error, KafkaError) and error.code() in FENCED_CODES
    return False


def position_after(msg: Message) -> TopicPartition:
    """The offset to commit once ``msg`` is done: the next one of its partition."""
    return TopicPartition(msg.topic(), msg.partition(), msg.offset() + 1)
