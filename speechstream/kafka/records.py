"""Decoding a record into the envelope a service expects, or the dead letter that keeps it.

The one place where "decode, check the type, else dead-letter" is written; the confluent
consume loop (``speechstream.kafka.consumer``) and the Faust agents (``streams.deadletter``)
both call it.
"""

from __future__ import annotations

from schemas.codec import MAX_EVENT_BYTES, dead_letter, decode
from schemas.envelope import Envelope
from speechstream.exceptions import DecodeError

Expected = type | tuple[type, ...]
"""The payload class (or classes) a topic may carry."""


def decode_record(
    value: bytes | None,
    topic: str,
    partition: int | None,
    offset: int | None,
    expected: Expected | None = None,
    max_bytes: int = MAX_EVENT_BYTES,
) -> Envelope:
    """The envelope of one record, or :class:`DecodeError` with the reason and the raw bytes.

    A record that decodes to another event type than ``expected`` is refused too: a
    consumer never acts on an event that does not belong on its topic. (On every record's
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
