"""The operator's uid handover: its signed fields, the signature round trip, the wire format."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.codec import decode, encode
from schemas.events import EVENT_TYPES, UidHandover, UidReassigned, UidRevoked
from schemas.signed import signed_envelope
from schemas.signing import generate_key, signature_is_valid
from schemas.topics import CLAIMED, INTAKE_TABLES, MINERS, REGISTRATIONS, RELEASED


def _fields(operator: str, **kw: object) -> dict[str, object]:
    return {"type": "uid.reassigned", "uid": 7, "hotkey": "b" * 64, "block": 120,
            "operator": operator, **kw}


def test_the_signature_covers_every_field_but_itself_and_round_trips() -> None:
    private, public = generate_key()
    env = signed_envelope(UidReassigned, _fields(public), private, key="7", producer="t",
                          signer="operator")
    event = env.payload
    assert isinstance(event, UidReassigned)
    assert event.signed_fields() == _fields(public)
    assert signature_is_valid(public, event.signed_fields(), event.signature)
    for change in ({"uid": 8}, {"hotkey": "c" * 64}, {"block": 121}):
        tampered = event.model_copy(update=change)
        assert not signature_is_valid(public, tampered.signed_fields(), event.signature)
    again = decode(encode(env))
    assert again == env
    # Deterministic signature, so the same handover is the same event.
    same = signed_envelope(UidReassigned, _fields(public), private, key="7", producer="t",
                           signer="operator")
    assert same.event_id == env.event_id


@pytest.mark.parametrize("bad", [{"hotkey": "B" * 64}, {"hotkey": "b" * 63}, {"uid": -1},
                                 {"block": -1}, {"operator": "x"}, {"extra": 1}])
def test_bad_fields_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        UidReassigned(**{**_fields("a" * 64), **bad}, signature="0" * 128)


def test_the_registry_knows_the_events_and_the_tables() -> None:
    assert {"uid.reassigned", "uid.handover", "uid.revoked"} <= set(EVENT_TYPES)
    assert EVENT_TYPES["uid.revoked"] is UidRevoked
    assert EVENT_TYPES["uid.handover"] is UidHandover
    assert "uid.reassigned" in REGISTRATIONS.events
    assert {"uid.handover", "uid.revoked"} <= set(CLAIMED.events)
    assert "uid.handover" in RELEASED.events
    assert {"uid.handover", "uid.revoked"} <= set(MINERS.events)
    assert {"uid_handover", "hotkey_reassigned"} <= set(INTAKE_TABLES)
