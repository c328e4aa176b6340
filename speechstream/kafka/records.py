"""Decoding a record into the envelope a service expects, or the dead letter that keeps it.

The one place where "decode, check the type, else dead-letter" is written; the confluent
consume loop (``speechstream.kafka.consumer``) and the Faust agents (``streams.deadletter``)
both call it. A record that decodes but that a service cannot process (its handling raises)
becomes a dead letter of the same shape (:func:`unprocessable_letter`), unless what was raised
is a Kafka or transaction error (:func:`caused_by_kafka`): that one is never the record's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from confluent_kafka import KafkaException, Message
from prometheus_client import Counter

from schemas.codec import MAX_EVENT_BYTES, dead_letter, decode
from schemas.envelope import Envelope
from schemas.events import DeadLetter
from speechstream.exceptions import (
    ConsumeError,
    DecodeError,
    DeliveryError,
    TopicAdminError,
    TransactionError,
)

Expected = type | tuple[type, ...]
"""The payload class (or classes) a topic may carry."""
Verify = Callable[[Envelope, bytes, str], "str | None"]
"""Why a decoded record (its envelope, raw bytes and topic) must not count, or None: a
:class:`~speechstream.trust.TrustStore`'s ``verify``."""


def decode_record(
    value: bytes | None,
    topic: str,
    partition: int | None,
    offset: int | None,
    expected: Expected | None = None,
    max_bytes: int = MAX_EVENT_BYTES,
    verify: Verify | None = None,
) -> Envelope:
    """The envelope of one record, or :class:`DecodeError` with the reason and the raw bytes.

    A record that decodes to another event type than ``expected`` is refused too: a
    consumer never acts on an event that does not belong on its topic; so is one that
    ``verify`` refuses (its signer may not say it: ``schemas.trust``). (On every record's
    path: positional arguments, nothing built unless it fails.)
    """
    try:
        envelope = decode(value, max_bytes=max_bytes)
    except ValueError as exc:
        raise DecodeError(str(exc), value or b"", topic=topic, partition=partition,
                          offset=offset) from exc
    if expected is not None and not isinstance(envelope.payload, expected):
        raise DecodeError(
            f"wrong event type {envelope.type!r} on {topic} (expected {_names(expected)})",
            value or b"", topic=topic, partition=partition, offset=offset,
        )
    if verify is not None:
        reason = verify(envelope, value or b"", topic)
        if reason is not None:
            raise DecodeError(f"untrusted: {reason}", value or b"", topic=topic,
                              partition=partition, offset=offset)
    return envelope


def dead_letter_for(error: DecodeError, *, consumer: str) -> Envelope:
    """The dead-letter envelope of a record that failed to decode (deterministic event id)."""
    return dead_letter(
        error.raw, error.reason, topic=error.topic, partition=error.partition,
        offset=error.offset, consumer=consumer,
    )


def _names(expected: Expected) -> str:
    classes = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(cls.model_fields["type"].default for cls in classes)


KAFKA_FAILURES: tuple[type[BaseException], ...] = (
    KafkaException, TransactionError, DeliveryError, ConsumeError, TopicAdminError,
)
"""What the broker or a Kafka client raises: never a record's fault."""
MAX_REASON = 1000
"""A dead letter's reason is cut to this many characters."""


def caused_by_kafka(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from or while handling, is a Kafka or
    transaction error (:data:`KAFKA_FAILURES`): such an error is retried or stops the service,
    never set aside as a record's fault."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KAFKA_FAILURES):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def unprocessable_reason(exc: BaseException, *, consumer: str) -> str:
    """The reason a dead letter gives for a record that decoded but could not be processed:
    who could not, and the exception's type and first line."""
    lines = str(exc).strip().splitlines()
    detail = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return f"{consumer} cannot process it: {detail}"[:MAX_REASON]


def unprocessable_letter(msg: Message, reason: str, *, consumer: str) -> Envelope:
    """The dead-letter envelope of a consumed record that decoded but could not be processed
    (its raw bytes and where they came from, with ``reason``; the same deterministic event id
    as a record that did not decode)."""
    return dead_letter(msg.value() or b"", reason[:MAX_REASON], topic=msg.topic(),
                       partition=msg.partition(), offset=msg.offset(), consumer=consumer)


DEAD_LETTER_LABELS = ("consumer", "reason")
"""The labels of each service's dead-letter counter: the consumer that set the record aside
(a dead letter's ``consumer``) and the kind of its reason (:func:`reason_kind`)."""
KEPT_IN_PLACE = "undecodable_dead_letter"
"""The reason kind of a record on the dead-letter topic itself that does not decode: kept where
it is (a dead letter of a dead letter would loop), counted all the same."""
_REASON_KINDS = (
    ("untrusted:", "untrusted"),
    ("wrong event type", "wrong_type"),
    ("not JSON", "not_json"),
    ("not a JSON object", "not_envelope"),
    ("not an event envelope", "not_envelope"),
    ("unsupported schema version", "schema_version"),
    ("schema violation", "schema_violation"),
    ("oversize payload", "oversize"),
    ("empty record", "empty"),
    ("the sink cannot store it", "unstorable"),
)
REASON_KINDS = frozenset({kind for _, kind in _REASON_KINDS} | {"unprocessable", "other"})
"""Every value :func:`reason_kind` gives."""


def reason_kind(reason: str) -> str:
    """A dead letter's reason as one of a few kinds, a label that stays bounded whatever a
    record holds: ``untrusted``, ``wrong_type``, ``not_json``, ``not_envelope``,
    ``schema_version``, ``schema_violation``, ``oversize``, ``empty``, ``unstorable`` (the
    database refused its values), ``unprocessable`` (decoded, but its handling raised), or
    ``other``."""
    for prefix, kind in _REASON_KINDS:
        if reason.startswith(prefix):
            return kind
    return "unprocessable" if " cannot process it: " in reason else "other"


def expect_dead_letters(counter: Counter, consumer: str, *extra: str) -> None:
    """Start ``counter`` at 0 for each kind of reason (:data:`REASON_KINDS`, and ``extra``) of
    ``consumer``'s dead letters: a rate reads from the first one, and a query reads 0, not
    nothing, before any."""
    for kind in (*sorted(REASON_KINDS), *extra):
        counter.labels(consumer, kind)


def count_dead_letters(counter: Counter, letters: Iterable[Envelope]) -> None:
    """Count ``letters`` (dead-letter envelopes) in ``counter`` by consumer and reason kind."""
    for letter in letters:
        payload = letter.payload
        if isinstance(payload, DeadLetter):
            counter.labels(payload.consumer, reason_kind(payload.error)).inc()
