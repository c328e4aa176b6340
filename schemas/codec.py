"""The one codec for every topic: envelope ⇄ JSON bytes, with clear decode errors."""

from __future__ import annotations

import base64
import json

from pydantic import ValidationError

from schemas.envelope import SCHEMA_VERSION, Envelope, derived_event_id, new_envelope
from schemas.events import DeadLetter
from schemas.exceptions import DecodeError

MAX_EVENT_BYTES = 256 * 1024
# A dead letter carries the raw bytes (base64) of what failed, so it may be larger than an
# event; past DEAD_LETTER_RAW_BYTES only a prefix is kept (the whole record stays in its
# source topic, at the topic/partition/offset the dead letter names).
MAX_DEAD_LETTER_BYTES = 1024 * 1024 - 64 * 1024
DEAD_LETTER_RAW_BYTES = 512 * 1024


def encode(envelope: Envelope) -> bytes:
    """Serialize an envelope to the wire format (UTF-8 JSON)."""
    return envelope.model_dump_json(exclude_none=False).encode("utf-8")


def decode(
    raw: bytes | None,
    *,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    max_bytes: int = MAX_EVENT_BYTES,
) -> Envelope:
    """Parse wire bytes into an envelope or raise :class:`DecodeError` with the reason.

    ``max_bytes`` is :data:`MAX_EVENT_BYTES`; readers of the dead-letter topic pass
    :data:`MAX_DEAD_LETTER_BYTES`.
    """
    where = {"topic": topic, "partition": partition, "offset": offset}
    if raw is None:
        raise DecodeError("empty record (no value)", b"", **where)
    if len(raw) > max_bytes:
        raise DecodeError(
            f"oversize payload: {len(raw)} bytes > limit {max_bytes}", raw, **where
        )
    try:
        return Envelope.model_validate_json(raw)
    except ValidationError as exc:
        raise DecodeError(_diagnose(raw, exc), raw, **where) from exc


def _diagnose(raw: bytes, exc: ValidationError) -> str:
    """A one-line reason for a record that failed validation (the slow path only)."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"not JSON: {err}"
    if not isinstance(doc, dict):
        return f"not a JSON object: {type(doc).__name__}"
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        return f"unsupported schema version {version!r} (this build reads {SCHEMA_VERSION})"
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"schema violation ({exc.error_count()} errors), first at {loc}: {first['msg']}"


def dead_letter(error: DecodeError, *, consumer: str, topic: str | None = None) -> Envelope:
    """The dead-letter envelope for a record that failed to decode: raw bytes kept whole."""
    source = error.topic or topic or "unknown"
    payload = DeadLetter(
        raw_b64=base64.b64encode(error.raw[:DEAD_LETTER_RAW_BYTES]).decode("ascii"),
        raw_size=len(error.raw),
        topic=source,
        partition=error.partition,
        offset=error.offset,
        error=error.reason,
        consumer=consumer,
    )
    # Deterministic id: re-processing the same bad record yields the same dead letter.
    event_id = derived_event_id(f"{source}/{error.partition}/{error.offset}", "deadletter")
    return new_envelope(payload, key=None, producer=consumer, event_id=event_id)
