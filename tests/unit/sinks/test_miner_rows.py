"""The miners table's rows of a uid handover: the new hotkey gets the uid, the old holds none."""

from __future__ import annotations

from schemas.envelope import new_envelope
from schemas.events import UidHandover, UidRevoked
from sinks.rows import rows_of
from sinks.tables import FEEDS

OLD, NEW = "a" * 64, "b" * 64


def _feed(name: str):
    return next(f for f in FEEDS if f.name == name)


def test_a_handover_writes_both_hotkeys_rows() -> None:
    handover = new_envelope(UidHandover(uid=3, hotkey=NEW, previous=OLD, block=50,
                                        source_event_id="e"), key=NEW, producer="t")
    revoked = new_envelope(UidRevoked(hotkey=OLD, uid=3, to=NEW, block=50,
                                      source_event_id="e"), key=OLD, producer="t")
    rows = rows_of([handover, revoked])
    granted, = rows["miners_handover"]
    lost, = rows["miners_revoked"]
    feed = _feed("miners_handover")
    assert (granted[feed.position("hotkey")], granted[feed.position("uid")],
            granted[feed.position("block")]) == (NEW, 3, 50)
    feed = _feed("miners_revoked")
    assert (lost[feed.position("hotkey")], lost[feed.position("uid")],
            lost[feed.position("block")]) == (OLD, None, 50)
    assert rows["miners"] == []
