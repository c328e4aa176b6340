"""The one versioned envelope every event travels in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.events import Event
from schemas.fields import Hotkey, Signature

SCHEMA_VERSION = 1
_NAMESPACE = uuid.UUID("5b1f3c1e-6a53-4c1f-9a0e-7f3f1d2b9c10")


class Envelope(BaseModel):
    """Event id, type, schema version, key, time and producer around one event payload, and the
    signature of who says it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(min_length=1, max_length=64)
    type: str
    schema_version: Literal[1] = SCHEMA_VERSION
    key: str | None = None
    time: datetime
    producer: str = Field(min_length=1, max_length=128)
    payload: Event
    signer: Hotkey | None = None
    """The public key that signed this envelope (``schemas.trust``): a key the operator trusts
    for the role that may say this event; None on a miner's own payload-signed event."""
    signature: Signature | None = None
    """ed25519 signature of ``signer`` over the record as written on the wire, this field
    written as null (``schemas.trust.signed_part``); the last field, so the codec writes it
    last."""

    @model_validator(mode="after")
    def _type_matches_payload(self) -> Envelope:
        if self.type != self.payload.type:
            raise ValueError(f"envelope type {self.type!r} != payload type {self.payload.type!r}")
        return self


def derived_event_id(source_event_id: str, stage: str) -> str:
    """A deterministic event id for what ``stage`` emits from ``source_event_id``.

    Faust runs at least once: a re-processed input yields the same downstream event id, and
    every sink is idempotent on it.
    """
    return str(uuid.uuid5(_NAMESPACE, f"{stage}:{source_event_id}"))


def new_envelope(
    payload: Any,
    *,
    key: str | None,
    producer: str,
    event_id: str | None = None,
    time: datetime | None = None,
) -> Envelope:
    """Wrap ``payload`` in an envelope with a fresh (or given) event id and the current time."""
    return Envelope(
        event_id=event_id or str(uuid.uuid4()),
        type=payload.type,
        key=key,
        time=time or datetime.now(UTC),
        producer=producer,
        payload=payload,
    )
