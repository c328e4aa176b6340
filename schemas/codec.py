"""The one codec for every topic: envelope ⇄ JSON bytes, with a one-line reason for bad bytes.

``decode`` raises ``ValueError`` with that reason; the floor's record decoder
(``speechstream.kafka.records``) adds where the bytes came from and dead-letters them.
"""

from __future__ import annotations

import base64
import json

from pydantic import ValidationError

from schemas.envelope import SCHEMA_VERSION, Envelope, derived_event_id, new_envelope
from schemas.events import DeadLetter

MAX_EVENT_BYTES = 256 * 1024
# A weights vector names every uid of the subnet (up to 4,096, each with its submission and
# why it does not compete): 1.9 MB for 4,096 uids each with a submission under the longest
# repo name, 11.1 MB at most (every field the validator copies at its source's longest, each
# free-text character one that JSON escapes to six bytes:
# tests/unit/consumers/test_vector_size.py). Its topic (max.message.bytes: schemas.topics),
# the validator's producer and every reader of the topic allow MAX_VECTOR_BYTES.
MAX_VECTOR_BYTES = 16 * 1024 * 1024
# A dead letter carries the raw bytes (base64) of what failed, so it may be larger than an
# event; past DEAD_LETTER_RAW_BYTES only a prefix is kept (the whole record stays in its
# source topic, at the topic/partition/offset the dead letter names).
MAX_DEAD_LETTER_BYTES = 1024 * 1024 - 64 * 1024
DEAD_LETTER_RAW_BYTES = 512 * 1024


_VALIDATE = Envelope.__pydantic_validator__.validate_json  # model_validate_json, minus a call


def encode(envelope: Envelope) -> bytes:
    """Serialize an envelope to the wire format (UTF-8 JSON)."""
    return envelope.model_dump_json(exclude_none=False).encode("utf-8")


def decode(raw: bytes | None, *, max_bytes: int = MAX_EVENT_BYTES) -> Envelope:
    """Parse wire bytes into an envelope; raise ``ValueError`` with a one-line reason.

    ``max_bytes`` is :data:`MAX_EVENT_BYTES`; readers of the dead-letter topic pass
    :data:`MAX_DEAD_LETTER_BYTES`.
    """
    if raw is None:
        raise ValueError("empty record (no value)")
    if len(raw) > max_bytes:
        raise ValueError(f"oversize payload: {len(raw)} bytes > limit {max_bytes}")
    try:
        return _VALIDATE(raw)
    except ValidationError as exc:
        raise ValueError(_diagnose(raw, exc)) from exc


def _diagnose(raw: bytes, exc: ValidationError) -> str:
    """A one-line reason for a record that failed validation (the slow path only)."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"not JSON: {err}"
    if not isinstance(doc, dict):
        return f"not a JSON object: {type(doc).__name__}"
    missing = [name for name, field in Envelope.model_fields.items()
               if field.is_required() and name not in doc]
    if "schema_version" not in doc and "payload" not in doc:
        return ("not an event envelope: a JSON object without "
                f"{', '.join(missing or ['schema_version', 'payload'])}")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        return f"unsupported schema version {version!r} (this build reads {SCHEMA_VERSION})"
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"schema violation ({exc.error_count()} errors), first at {loc}: {first['msg']}"


def dead_letter(
    raw: bytes,
    reason: str,
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    consumer: str,
) -> Envelope:
    """The dead-letter envelope of a record that failed to decode: its raw bytes kept whole."""
    payload = DeadLetter(
        raw_b64=base64.b64encode(raw[:DEAD_LETTER_RAW_BYTES]).decode("ascii"),
        raw_size=len(raw),
        topic=topic,
        partition=partition,
        offset=offset,
        error=reason,
        consumer=consumer,
    )
    # Deterministic id: re-processing the same bad record yields the same dead letter.
    event_id = derived_event_id(f"{topic}/{partition}/{offset}", "deadletter")
    return new_envelope(payload, key=None, producer=consumer, event_id=event_id)
