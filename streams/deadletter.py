"""Decoding inside agents: a record that does not decode goes to the dead-letter topic."""

from __future__ import annotations

import faust

from schemas.codec import dead_letter, decode, encode
from schemas.envelope import Envelope
from schemas.exceptions import DecodeError
from streams.metrics import StreamsMetrics

CONSUMER_NAME = "speechstream-streams"


async def decode_or_dead_letter(
    event: faust.EventT, deadletter: faust.TopicT, metrics: StreamsMetrics, expected: type
) -> Envelope | None:
    """The event's envelope if it decodes to ``expected``; otherwise dead-letter it (None)."""
    msg = event.message
    try:
        envelope = decode(event.value, topic=msg.topic, partition=msg.partition,
                          offset=msg.offset)
        if not isinstance(envelope.payload, expected):
            raise DecodeError(
                f"wrong event type {envelope.type!r} on {msg.topic}", event.value or b"",
                topic=msg.topic, partition=msg.partition, offset=msg.offset,
            )
    except DecodeError as exc:
        letter = dead_letter(exc, consumer=CONSUMER_NAME)
        await deadletter.send(key=event.key, value=encode(letter))
        metrics.dead_letters.inc()
        return None
    return envelope
