"""SPEC §3 rules: signature, hash, registration, rate limit edges, duplicates."""

from __future__ import annotations

import pytest

from producers.miner import registration, submission
from schemas.envelope import Envelope, derived_event_id, new_envelope
from schemas.events import EvaluationRequested, SubmissionAttested
from schemas.fields import RejectionCode
from schemas.signed import signed_envelope, submission_fields
from schemas.signing import generate_key
from speechstream.keys import Hotkey
from streams.rules import (
    RATE_LIMIT_BLOCKS,
    REQUESTED,
    Rejection,
    check_block,
    check_hotkey,
    check_registration,
    check_signature,
    check_submission,
    dedupe,
    forget,
    remember,
    withdrawal,
)


@pytest.fixture
def key() -> Hotkey:
    return Hotkey(*generate_key())


def _sub(key: Hotkey, block: int, name: str = "m", **kw):
    return submission(key, repo_namespace="ns", repo_name=name, block=block, **kw).payload


def test_signature_good_and_forged(key) -> None:
    event = _sub(key, 100)
    assert check_signature(event) is None
    forged = event.model_copy(update={"block": 101})
    rejection = check_signature(forged)
    assert rejection is not None and rejection.code is RejectionCode.BAD_SIGNATURE


def _attested(operator: Hotkey, miner: Hotkey, block: int = 100):
    fields = {**submission_fields("submission.attested", repo_namespace="ns", repo_name="api",
                                  hotkey=miner.hotkey, block=block),
              "operator": operator.hotkey}
    return signed_envelope(SubmissionAttested, fields, operator.private_key, key=miner.hotkey,
                           producer="test", signer="operator").payload


def test_an_attested_submission_counts_only_from_the_operator_key(key) -> None:
    operator, stranger = Hotkey(*generate_key()), Hotkey(*generate_key())
    event = _attested(operator, key)
    assert check_signature(event, operator.hotkey) is None
    assert check_submission(event, 1, None) is None  # then the same rules as a miner's
    for configured in (stranger.hotkey, None):
        rejection = check_signature(event, configured)
        assert rejection is not None and rejection.code is RejectionCode.BAD_SIGNATURE
        assert "not the operator's key" in rejection.message
    assert "no operator key is configured" in check_signature(event, None).message
    # A stranger signing in the operator's name, and a tampered attestation, do not verify.
    forged = _attested(stranger, key).model_copy(update={"operator": operator.hotkey})
    tampered = event.model_copy(update={"block": 101})
    for bad in (forged, tampered):
        rejection = check_signature(bad, operator.hotkey)
        assert rejection is not None and "does not verify" in rejection.message


def test_hash_mismatch_and_unregistered(key) -> None:
    bad = _sub(key, 100, hash_override="12345")
    assert check_submission(bad, 1, None).code is RejectionCode.HASH_MISMATCH
    assert check_submission(_sub(key, 100), None, None).code is RejectionCode.UNREGISTERED_HOTKEY
    assert check_submission(_sub(key, 100), 1, None) is None


@pytest.mark.parametrize(
    ("gap", "limited"),
    [(RATE_LIMIT_BLOCKS - 1, True), (RATE_LIMIT_BLOCKS, False), (1, True), (50_000, False)],
)
def test_rate_limit_edges(key, gap, limited) -> None:
    first = _sub(key, 1_000, "a")
    history = remember(None, first.block, first.hash)
    verdict = check_submission(_sub(key, 1_000 + gap, "b"), 1, history)
    assert isinstance(verdict, Rejection) is limited
    if limited:
        assert verdict.code is RejectionCode.RATE_LIMITED
        assert f"{RATE_LIMIT_BLOCKS - gap} more blocks" in verdict.message


def test_block_difference_zero_is_the_same_commitment(key) -> None:
    first = _sub(key, 1_000, "a")
    history = remember(None, first.block, first.hash)
    assert check_submission(first, 1, history) == "replay"
    # the same block with another repo is a new submission, and too soon
    assert check_submission(_sub(key, 1_000, "b"), 1, history).code is RejectionCode.RATE_LIMITED


def test_decisions_are_stable_when_records_are_processed_again(key) -> None:
    a1, a2, a3 = _sub(key, 1_000, "a1"), _sub(key, 1_500, "a2"), _sub(key, 40_000, "a3")
    history = remember(None, a1.block, a1.hash)
    assert check_submission(a2, 1, history).code is RejectionCode.RATE_LIMITED
    assert check_submission(a3, 1, history) is None
    history = remember(history, a3.block, a3.hash)
    # a second delivery of a2 and a3 gets the same answers
    assert check_submission(a2, 1, history).code is RejectionCode.RATE_LIMITED
    assert check_submission(a3, 1, history) == "replay"


def test_uid_belongs_to_its_first_hotkey(key) -> None:
    event = registration(key, uid=3, block=1).payload
    assert check_registration(event, None) is None
    assert check_registration(event, key.hotkey) is None
    other = Hotkey(*generate_key())
    assert check_registration(event, other.hotkey).code is RejectionCode.UID_TAKEN


def _entry(block: int, hash_: str, event_id: str) -> dict:
    return {"block": block, "hash": hash_, "event_id": event_id, "repo": "ns/m"}


def test_duplicates_the_later_block_loses_in_either_order() -> None:
    early, late = _entry(100, "1", "e1"), _entry(200, "2", "e2")
    assert dedupe(None, early).kind == "accept"
    decision = dedupe(early, late)
    assert decision.kind == "reject" and decision.rejection.code is RejectionCode.DUPLICATE_REPO
    decision = dedupe(late, early)
    assert decision.kind == "displace"
    assert decision.rejection.code is RejectionCode.DUPLICATE_REPO
    assert dedupe(early, dict(early)).kind == "replay"


def test_same_hash_later_is_a_duplicate_hash() -> None:
    decision = dedupe(_entry(100, "7", "e1"), _entry(30_000, "7", "e2"))
    assert decision.kind == "reject" and decision.rejection.code is RejectionCode.DUPLICATE_HASH


def _accepted(hash_: str, block: int, event_id: str, source: str) -> Envelope:
    request = EvaluationRequested(
        hash=hash_, hotkey="ab" * 32, uid=4, repo_namespace="ns", repo_name="m", block=block,
        source_event_id=source,
    )
    return new_envelope(request, key="ns/m", producer="test", event_id=event_id)


def test_a_displaced_holder_has_its_request_withdrawn() -> None:
    holder, newcomer = _accepted("2", 200, "acc-2", "sub-2"), _accepted("1", 100, "acc-1", "sub-1")
    decision = dedupe(
        {"block": 200, "hash": "2", "event_id": "sub-2", "repo": "ns/m"},
        {"block": 100, "hash": "1", "event_id": "sub-1", "repo": "ns/m"},
    )
    assert decision.kind == "displace" and decision.rejection is not None
    cancelled = withdrawal(holder, newcomer, decision.rejection)
    assert cancelled is not None
    # The id the holder's request got when it was routed (the agents' ``_route``).
    assert cancelled.request_event_id == derived_event_id("acc-2", REQUESTED)
    assert (cancelled.hash, cancelled.hotkey, cancelled.uid, cancelled.block) == (
        "2", "ab" * 32, 4, 200)
    assert cancelled.code is RejectionCode.DUPLICATE_REPO
    assert cancelled.reason == "duplicate of ns/m submitted earlier at block 100 (hash 1)"
    assert (cancelled.displaced_by, cancelled.displaced_by_hash) == ("sub-1", "1")
    # Deterministic: a redelivery builds the same event.
    assert withdrawal(holder, newcomer, decision.rejection) == cancelled


def test_a_holder_displaced_by_its_own_hash_keeps_its_request() -> None:
    holder, newcomer = _accepted("7", 40_000, "acc-2", "sub-2"), _accepted("7", 100, "acc-1",
                                                                            "sub-1")
    rejection = Rejection(RejectionCode.DUPLICATE_HASH, "duplicate")
    assert withdrawal(holder, newcomer, rejection) is None


@pytest.mark.parametrize(("namespace", "name"), [
    ("..", "outside-root"), ("ns", ".."), ("ns", ".hidden"), ("ns", "a--b"), ("-x", "m"),
    ("ns", "m."), ("ns", "a..b"),
])
def test_a_repo_outside_the_hubs_naming_rules_is_rejected_with_its_reason(
    key, namespace: str, name: str
) -> None:
    event = submission(key, repo_namespace=namespace, repo_name=name, block=100).payload
    rejection = check_submission(event, 1, None)
    assert isinstance(rejection, Rejection) and rejection.code is RejectionCode.INVALID_REPO
    assert repr(namespace if namespace in rejection.message else name) in rejection.message


def test_forget_drops_one_commitment_and_keeps_the_rest() -> None:
    history = remember(remember(None, 1000, "1"), 40_000, "2")
    assert forget(history, 1000, "1") == [[40_000, "2"]]
    assert forget(history, 1000, "other") == history  # not there: unchanged
    assert forget(None, 1, "1") == []


def test_the_claimed_block_lies_between_registration_and_head(key) -> None:
    def code(block: int, registered: int | None, head: int | None):  # noqa: ANN202
        verdict = check_submission(_sub(key, block), 1, None, registered_block=registered,
                                   head=head)
        return verdict.code if isinstance(verdict, Rejection) else verdict

    assert code(50, 100, 6000) is RejectionCode.BLOCK_OUT_OF_RANGE  # before its registration
    assert code(7000, 100, 6000) is RejectionCode.BLOCK_OUT_OF_RANGE  # ahead of the head
    assert code(100, 100, 6000) is None and code(6000, 100, 6000) is None  # both bounds held
    assert code(50, None, None) is None  # neither bound known
    assert "before the hotkey's registration at block 100" in check_block(50, 100, None).message
    assert "ahead of the chain's head (block 6000)" in check_block(7000, None, 6000).message
    # A commitment accepted before stays a replay, whatever the head says now.
    accepted = remember(None, 7000, _sub(key, 7000).hash)
    assert check_submission(_sub(key, 7000), 1, accepted, head=6000) == "replay"


def test_a_claimed_block_lies_within_the_window_behind_the_head_of_its_time(key) -> None:
    def verdict(block: int, head_then: int | None, head: int | None = 2_000_000,
                registered: int | None = 100):  # noqa: ANN202
        return check_submission(_sub(key, block), 1, None, registered_block=registered,
                                head=head, head_then=head_then, block_window=25)

    # The attack: registered at 100, a claim at 200 while the head stood at 2,000,000.
    refused = verdict(200, 2_000_000)
    assert isinstance(refused, Rejection) and refused.code is RejectionCode.BLOCK_TOO_OLD
    assert refused.message == (
        "block 200 is more than 25 blocks behind the chain's head when it reached the broker "
        "(block 2000000); a claimed block lies within 25 blocks of the head")
    assert verdict(1_999_975, 2_000_000) is None  # exactly the window behind: held
    assert verdict(1_999_974, 2_000_000).code is RejectionCode.BLOCK_TOO_OLD
    # Judged by the head of its own time (a backlog): the head has moved on since.
    assert verdict(1_000, 1_010, head=2_000_000) is None
    # No head then (appended before the first head): no lower bound but the registration's.
    assert verdict(200, None) is None
    assert verdict(50, None).code is RejectionCode.BLOCK_OUT_OF_RANGE
    # No window given: the bound of before.
    assert check_block(200, 100, 2_000_000, head_then=2_000_000) is None
    # The upper bound is the head now, whatever the window.
    ahead = check_block(2_000_001, None, 2_000_000, head_then=2_000_000, window=25)
    assert ahead is not None and ahead.code is RejectionCode.BLOCK_OUT_OF_RANGE


def test_a_hotkey_holds_one_uid(key) -> None:
    assert check_hotkey(registration(key, uid=4, block=1).payload, None) is None
    assert check_hotkey(registration(key, uid=4, block=9).payload, 4) is None  # again: fine
    other = check_hotkey(registration(key, uid=99, block=9).payload, 4)
    assert other is not None and other.code is RejectionCode.HOTKEY_HAS_OTHER_UID
    assert "already holds uid 4" in other.message


def test_a_uid_outside_the_subnet_is_refused() -> None:
    from schemas.events import MinerRegistered
    from streams.rules import check_uid

    def reg(uid: int) -> MinerRegistered:
        return MinerRegistered(hotkey="a" * 64, uid=uid, block=1, signature="b" * 128)

    assert check_uid(reg(255), 256) is None
    refused = check_uid(reg(256), 256)
    assert refused is not None and refused.code == "UID_OUT_OF_RANGE"
    assert refused.message == "uid 256 is not in this subnet (0 to 255)"


def test_signed_content_under_another_event_id_is_refused() -> None:
    from producers.miner import submission
    from streams.rules import check_event_id

    key = Hotkey(*generate_key())
    original = submission(key, repo_namespace="ns", repo_name="m", block=100)
    assert check_event_id(original) is None
    replayed = original.model_copy(update={"event_id": "another-id"})
    refused = check_event_id(replayed)
    assert refused is not None and refused.code == "EVENT_ID_MISMATCH"
    assert original.event_id in refused.message
