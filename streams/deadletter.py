"""Decoding inside agents: a record that does not decode goes to the dead-letter topic.

The decoding and the dead letter are the floor's (``speechstream.kafka.records``); this is
only their Faust transport.
"""

from __future__ import annotations

import faust

from schemas.codec import encode
from schemas.envelope import Envelope
from speechstream.exceptions import DecodeError
from speechstream.kafka.records import (
    Expected,
    Verify,
    count_dead_letters,
    dead_letter_for,
    decode_record,
)
from speechstream.signer import Signer
from streams.ages import RecordAges
from streams.metrics import StreamsMetrics

CONSUMER_NAME = "speechstream-streams"


async def decode_or_dead_letter(
    event: faust.EventT, deadletter: faust.TopicT, metrics: StreamsMetrics, expected: Expected,
    *, verify: Verify | None = None, signer: Signer | None = None, ages: RecordAges | None = None,
) -> Envelope | None:
    """The event's envelope if it decodes to ``expected`` and ``verify`` lets it count;
    otherwise dead-letter it (signed with ``signer`` when there is one) and answer None.
    Each event's age is observed in ``ages`` first."""
    msg = event.message
    if ages is not None:
        ages.observe(msg)
    try:
        return decode_record(event.value, msg.topic, msg.partition, msg.offset, expected,
                             verify=verify)
    except DecodeError as exc:
        letter = dead_letter_for(exc, consumer=CONSUMER_NAME)
        value = encode(letter) if signer is None else signer.encode(letter)
        await deadletter.send(key=event.key, value=value)
        count_dead_letters(metrics.dead_letters, [letter])
        return None
