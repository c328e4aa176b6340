"""The operator's side: build signed operator actions (a uid handover) and publish them."""

from __future__ import annotations

from schemas.envelope import Envelope
from schemas.events import UidReassigned
from schemas.signed import signed_envelope
from speechstream.keys import Hotkey

PRODUCER_NAME = "speechstream-operator"
REGISTRY_READER = "speechstream-operator-registry"
"""The consumer group ``operator reassign-uid`` reads the miner registry under."""


def uid_reassignment(operator: Hotkey, *, uid: int, hotkey: str, block: int) -> Envelope:
    """A ``uid.reassigned`` event handing ``uid`` to ``hotkey`` at ``block``, signed with the
    operator's key, keyed by uid (like registrations)."""
    fields = {
        "type": "uid.reassigned",
        "uid": uid,
        "hotkey": hotkey,
        "block": block,
        "operator": operator.hotkey,
    }
    return signed_envelope(UidReassigned, fields, operator.private_key, key=str(uid),
                           producer=PRODUCER_NAME, signer="operator")
