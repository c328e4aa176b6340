"""The uid handover's rules: the operator's key, the plan on the uid's partition, the new
hotkey's check, the revocation, and the old hotkey's submissions."""

from __future__ import annotations

import pytest

from producers.miner import registration, submission
from producers.operator import uid_reassignment
from schemas.events import UidHandover
from schemas.fields import RejectionCode
from schemas.signing import generate_key
from speechstream.keys import Hotkey
from streams.rules import (
    Rejection,
    check_handover,
    check_hotkey,
    check_signature,
    check_submission,
    plan_handover,
    revocation_applies,
)


def _key() -> Hotkey:
    return Hotkey(*generate_key())


@pytest.fixture
def operator() -> Hotkey:
    return _key()


@pytest.fixture
def new() -> Hotkey:
    return _key()


def test_the_operators_handover_passes(operator, new) -> None:
    event = uid_reassignment(operator, uid=3, hotkey=new.hotkey, block=50).payload
    assert check_signature(event, operator.hotkey) is None


def test_a_handover_signed_by_another_key_is_refused(operator, new) -> None:
    other = _key()
    event = uid_reassignment(other, uid=3, hotkey=new.hotkey, block=50).payload
    rejection = check_signature(event, operator.hotkey)
    assert rejection is not None and rejection.code is RejectionCode.BAD_SIGNATURE
    assert rejection.message == (f"signed by {other.hotkey[:16]}…, which is not the "
                                 "operator's key")


def test_without_an_operator_key_no_handover_passes(operator, new) -> None:
    event = uid_reassignment(operator, uid=3, hotkey=new.hotkey, block=50).payload
    rejection = check_signature(event, None)
    assert rejection is not None and "no operator key is configured" in rejection.message


def test_a_tampered_handover_does_not_verify(operator, new) -> None:
    event = uid_reassignment(operator, uid=3, hotkey=new.hotkey, block=50).payload
    tampered = event.model_copy(update={"uid": 4})
    rejection = check_signature(tampered, operator.hotkey)
    assert rejection is not None and rejection.code is RejectionCode.BAD_SIGNATURE
    assert "does not verify" in rejection.message


def test_the_plan_claims_replays_and_ignores(operator, new) -> None:
    env = uid_reassignment(operator, uid=3, hotkey=new.hotkey, block=50)
    event, old = env.payload, _key().hotkey
    assert plan_handover(event, env.event_id, old, None) == "claim"
    assert plan_handover(event, env.event_id, None, None) == "claim"
    mine = {"event_id": env.event_id, "previous": old}
    # Delivered again after it claimed the uid: send it on again.
    assert plan_handover(event, env.event_id, new.hotkey, mine) == "replay"
    # Delivered again after the new hotkey refused it and the uid went back.
    assert plan_handover(event, env.event_id, old, mine) == "noop"
    # The uid is the new hotkey's already (another handover, or its registration).
    assert plan_handover(event, env.event_id, new.hotkey, {"event_id": "other"}) == "noop"
    assert plan_handover(event, env.event_id, new.hotkey, None) == "noop"


def _handover(new: Hotkey, previous: str | None) -> UidHandover:
    return UidHandover(uid=3, hotkey=new.hotkey, previous=previous, block=50,
                       source_event_id="e")


def test_a_hotkey_with_another_uid_is_refused_and_the_uid_stays(new) -> None:
    old = _key().hotkey
    assert check_handover(_handover(new, old), None) is None
    assert check_handover(_handover(new, old), 3) is None
    rejection = check_handover(_handover(new, old), 7)
    assert rejection is not None and rejection.code is RejectionCode.HOTKEY_HAS_OTHER_UID
    assert "already holds uid 7" in rejection.message
    assert f"uid 3 stays with hotkey {old[:16]}…" in rejection.message
    free = check_handover(_handover(new, None), 7)
    assert free is not None and free.message.endswith("uid 3 stays free")


def test_a_revocation_applies_to_its_uid_or_none() -> None:
    assert revocation_applies(3, 3)
    assert revocation_applies(None, 3)
    assert not revocation_applies(5, 3)


def test_the_old_hotkeys_submission_is_rejected_with_uid_reassigned() -> None:
    old, new = _key(), _key()
    event = submission(old, repo_namespace="ns", repo_name="m", block=100).payload
    reassigned = {"uid": 3, "block": 60, "to": new.hotkey}
    rejection = check_submission(event, None, None, reassigned=reassigned)
    assert isinstance(rejection, Rejection)
    assert rejection.code is RejectionCode.UID_REASSIGNED
    assert rejection.message == (
        f"uid 3 was handed to hotkey {new.hotkey[:16]}… at block 60 (an operator's handover); "
        f"hotkey {old.hotkey[:16]}… holds no uid now")
    # Registered again (another uid), it submits as any hotkey does.
    assert check_submission(event, 9, None, reassigned=reassigned) is None
    # Never registered: unregistered, as before.
    plain = check_submission(event, None, None)
    assert isinstance(plain, Rejection) and plain.code is RejectionCode.UNREGISTERED_HOTKEY


def test_a_registration_the_handover_overtook_is_refused() -> None:
    old, new = _key(), _key()
    reassigned = {"uid": 3, "block": 60, "to": new.hotkey}
    late = registration(old, uid=3, block=10).payload
    rejection = check_hotkey(late, None, reassigned)
    assert rejection is not None and rejection.code is RejectionCode.UID_REASSIGNED
    # Another uid, or one registered after the handover, is a registration like any other.
    assert check_hotkey(registration(old, uid=4, block=10).payload, None, reassigned) is None
    assert check_hotkey(registration(old, uid=3, block=61).payload, None, reassigned) is None
