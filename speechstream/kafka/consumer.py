"""The one confluent-kafka consume loop: poll records, decode them or turn them into dead letters.

A service asks for a batch of :class:`Record`; each holds the decoded envelope, or the dead
letter that replaces an undecodable record (the service publishes it, with its own delivery
guarantee, before the offset moves past it). A record of the dead-letter topic itself that
does not decode is never dead-lettered again: it stays where it is and is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from schemas.envelope import Envelope
from speechstream.exceptions import ConsumeError, DecodeError
from speechstream.kafka.records import Expected, dead_letter_for, decode_record, max_bytes_for
from speechstream.settings import KafkaSettings

Rebalance = Callable[[Consumer, list[TopicPartition]], None]


@dataclass(slots=True)
class Record:
    """One consumed record: its envelope, or the dead letter that stands for it.

    Both are None for an undecodable record of the dead-letter topic, which stays in place.
    """

    message: Message
    envelope: Envelope | None = None
    dead_letter: Envelope | None = None


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
    ) -> None:
        self.name = name
        self.topics = list(topics)
        self._kafka = kafka
        self._config = dict(config)
        self._expected = expected
        self._client = client
        self._log = logger or logging.getLogger(__name__)
        self._deadletter_topic = kafka.topics.deadletter
        self.at_end: set[tuple[str, int]] = set()
        """Partitions read to their end (with ``enable.partition.eof``) and not past it since."""

    @property
    def client(self) -> Consumer:
        """The confluent consumer; :class:`ConsumeError` before :meth:`start`."""
        if self._client is None:
            raise ConsumeError(f"{self.name}: the consumer is not started: call start() first")
        return self._client

    def start(self, *, on_revoke: Rebalance | None = None) -> EventConsumer:
        """Create the client (unless injected) and subscribe; ``on_revoke`` also sees losses."""
        if self._client is None:
            self._client = Consumer(self._kafka.to_librdkafka(**self._config))
        callbacks = {} if on_revoke is None else {"on_revoke": on_revoke, "on_lost": on_revoke}
        self._client.subscribe(self.topics, **callbacks)
        return self

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to ``max_records`` records within ``timeout_s``, each decoded or dead-lettered.

        A fatal consumer error raises :class:`ConsumeError`; a transient one (broker down, a
        topic not yet created) is logged and retried by librdkafka itself.
        """
        client = self.client
        if max_records == 1:
            msg = client.poll(timeout_s)
            messages = [] if msg is None else [msg]
        else:
            messages = client.consume(max_records, timeout_s)
        records: list[Record] = []
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self.at_end.add((msg.topic(), msg.partition()))
                elif error.fatal():
                    raise ConsumeError(f"{self.name}: consumer failed: {error}")
                else:
                    self._log.warning("%s: consumer: %s", self.name, error)
                continue
            if self.at_end:
                self.at_end.discard((msg.topic(), msg.partition()))
            records.append(self.decode(msg))
        return records

    def decode(self, msg: Message) -> Record:
        """The record of one message: decoded, or dead-lettered (see the module docstring)."""
        topic = msg.topic()
        expected = self._expected
        if isinstance(expected, Mapping):
            expected = expected.get(topic)
        try:
            return Record(msg, envelope=decode_record(
                msg.value(), topic=topic, partition=msg.partition(), offset=msg.offset(),
                expected=expected, max_bytes=max_bytes_for(topic, self._deadletter_topic),
            ))
        except DecodeError as exc:
            if topic == self._deadletter_topic:
                self._log.error("%s: undecodable dead letter %s@%s kept in place: %s",
                                self.name, msg.partition(), msg.offset(), exc.reason)
                return Record(msg)
            self._log.warning("%s: dead letter %s/%s@%s: %s", self.name, topic,
                              msg.partition(), msg.offset(), exc.reason)
            return Record(msg, dead_letter=dead_letter_for(exc, consumer=self.name))

    def drained(self) -> bool:
        """Whether every assigned partition has been read to its end (needs partition EOF)."""
        assignment = self.client.assignment()
        return bool(assignment) and all(
            (tp.topic, tp.partition) in self.at_end for tp in assignment
        )

    def commit(self) -> None:
        """Commit the positions of everything consumed so far, synchronously."""
        try:
            self.client.commit(asynchronous=False)
        except KafkaException as exc:
            raise ConsumeError(f"{self.name}: committing offsets failed: {exc.args[0]}") from exc

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


def position_after(msg: Message) -> TopicPartition:
    """The offset to commit once ``msg`` is done: the next one of its partition."""
    return TopicPartition(msg.topic(), msg.partition(), msg.offset() + 1)
