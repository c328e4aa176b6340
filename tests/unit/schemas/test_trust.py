"""Who may say what: the one check every reader makes (schemas.trust.refusal), attacked."""

from __future__ import annotations

import json

import pytest

from schemas.codec import decode, encode
from schemas.envelope import Envelope, new_envelope
from schemas.events import (
    ChainBlock,
    EvaluationCancelled,
    EvaluationRequested,
    KeysTrusted,
    MinerRegistered,
    SampleResult,
    ScoreComputed,
    ScoringActivated,
    SubmissionPublished,
    TrustedKey,
    WeightEntry,
    WeightsComputed,
)
from schemas.fields import RejectionCode
from schemas.signing import generate_key
from schemas.topics import (
    CHAIN_BLOCKS,
    CLAIMED,
    EVALUATION_REQUESTS,
    REGISTRATIONS,
    SCORES,
    SCORING_ACTIVE,
    SUBMISSIONS,
    WEIGHTS,
    TopicRegistry,
)
from schemas.trust import (
    TrustSet,
    refusal,
    root_refusal,
    sign_envelope,
    signed_encoding,
    signed_part,
)
from speechstream.exceptions import DecodeError
from speechstream.kafka.records import decode_record
from speechstream.trust import TrustStore

HASH = "12345"


class Party:
    def __init__(self, role: str, name: str) -> None:
        self.private, self.public = generate_key()
        self.role, self.name = role, name

    def sign(self, envelope: Envelope) -> Envelope:
        return sign_envelope(envelope, self.private, self.public)

    def entry(self) -> TrustedKey:
        return TrustedKey(key=self.public, role=self.role, name=self.name)  # type: ignore[arg-type]


ROOT_PRIVATE, ROOT = generate_key()
EVALUATOR = Party("evaluator", "ev-1")
SECOND_EVALUATOR = Party("evaluator", "ev-2")
INTAKE = Party("intake", "intake")
VALIDATOR = Party("validator", "v1")
OTHER_VALIDATOR = Party("validator", "v2")
OUTSIDER = Party("evaluator", "nobody")  # a key the operator never trusted
TRUSTED = TrustSet.of(KeysTrusted(version=3, keys=[
    p.entry() for p in (EVALUATOR, SECOND_EVALUATOR, INTAKE, VALIDATOR, OTHER_VALIDATOR)]))


def score(evaluator: str = "ev-1", total: float = 0.5) -> Envelope:
    sample = SampleResult(index=0, text="hello", ce=float("inf"), wer=0.25, score=0.0)
    return new_envelope(ScoreComputed(hash=HASH, status="COMPLETED", total_score=total,
                                      samples=[sample], evaluator=evaluator,
                                      request_event_id="r1"), key=HASH, producer="test")


def check(envelope: Envelope, spec=SCORES, trust: TrustSet = TRUSTED) -> str | None:  # noqa: ANN001
    raw = encode(envelope)
    return refusal(decode(raw), raw, spec, trust, ROOT)


def test_a_score_signed_by_a_trusted_evaluator_counts_after_the_wire() -> None:
    assert check(EVALUATOR.sign(score())) is None


def test_an_unsigned_score_is_refused_with_who_may_say_it() -> None:
    assert check(score()) == "unsigned score.computed on scores: only a key of evaluator may say it"


def test_a_key_the_operator_does_not_trust_is_refused() -> None:
    reason = check(OUTSIDER.sign(score(evaluator="nobody")))
    assert reason is not None
    assert "a key the operator does not trust (trusted set version 3)" in reason


def test_one_evaluator_cannot_write_anothers_score() -> None:
    reason = check(SECOND_EVALUATOR.sign(score(evaluator="ev-1")))
    assert reason == "score.computed names evaluator 'ev-1' but is signed by evaluator 'ev-2'"


def test_a_role_that_may_not_say_the_event_is_refused() -> None:
    reason = check(INTAKE.sign(score()))
    assert reason == "score.computed on scores signed by intake 'intake': only evaluator may say it"
    request = new_envelope(EvaluationRequested(
        hash=HASH, hotkey="a" * 64, uid=1, repo_namespace="n", repo_name="r", block=5,
        source_event_id="s"), key=HASH, producer="test")
    assert check(INTAKE.sign(request), EVALUATION_REQUESTS) is None
    reason = check(EVALUATOR.sign(request), EVALUATION_REQUESTS)
    assert reason is not None and "only intake may say it" in reason


def test_the_operator_root_says_activations_but_not_scores() -> None:
    activation = new_envelope(ScoringActivated(scoring_version="v1"), key="active", producer="t")
    assert check(sign_envelope(activation, ROOT_PRIVATE, ROOT), SCORING_ACTIVE) is None
    assert check(activation, SCORING_ACTIVE) is not None
    assert check(EVALUATOR.sign(activation), SCORING_ACTIVE) is not None
    reason = check(sign_envelope(score(evaluator="operator"), ROOT_PRIVATE, ROOT))
    assert reason is not None and "only evaluator may say it" in reason


@pytest.mark.parametrize(("before", "after"), [
    (b'"total_score":0.5', b'"total_score":0.9'),
    (b'"key":"12345"', b'"key":"12346"'),
    (b'"wer":0.25', b'"wer":0.0'),
    (b'"producer":"test"', b'"producer":"tent"'),
])
def test_any_change_to_a_signed_record_breaks_its_signature(before: bytes, after: bytes) -> None:
    raw = encode(EVALUATOR.sign(score()))
    assert before in raw
    altered = raw.replace(before, after)
    reason = refusal(decode(altered), altered, SCORES, TRUSTED, ROOT)
    assert reason == "bad signature on score.computed by evaluator 'ev-1': the record was altered"


def test_a_signature_moved_onto_other_content_is_refused() -> None:
    genuine = EVALUATOR.sign(score(total=0.1))
    forged = score(total=0.9).model_copy(update={"signer": genuine.signer,
                                                 "signature": genuine.signature})
    assert "bad signature" in (check(forged) or "")


def test_the_signature_holds_on_a_topic_mirrored_byte_for_byte() -> None:
    raw = encode(EVALUATOR.sign(score()))
    mirror = TopicRegistry("backup.speechstream.")
    spec = mirror.spec_of(mirror.scores)
    assert refusal(decode(raw), raw, spec, TRUSTED, ROOT) is None
    # What re-serializes a record (other key order, other spacing) is not a faithful mirror.
    reordered = json.dumps(dict(reversed(list(json.loads(raw).items())))).encode()
    assert "bad signature" in (refusal(decode(reordered), reordered, spec, TRUSTED, ROOT) or "")


def test_the_entry_topics_leave_the_payload_signature_to_the_intake() -> None:
    private, hotkey = generate_key()
    from schemas.signed import signed_envelope, submission_fields

    submission = signed_envelope(SubmissionPublished, submission_fields(
        "submission.published", repo_namespace="n", repo_name="r", hotkey=hotkey, block=9),
        private, key=hotkey, producer="miner", signer="miner")
    assert check(submission, SUBMISSIONS) is None
    registration = signed_envelope(MinerRegistered, {
        "type": "miner.registered", "hotkey": hotkey, "uid": 3, "coldkey": None, "block": 1},
        private, key="3", producer="miner", signer="miner")
    assert check(registration, REGISTRATIONS) is None
    # The same miner-signed registration written straight to the intake's internal topic
    # takes no uid: only the intake may carry it there.
    assert check(registration, CLAIMED) == ("unsigned miner.registered on registrations.claimed:"
                                            " only a key of intake may say it")
    assert check(INTAKE.sign(registration), CLAIMED) is None


def test_a_validator_cannot_write_anothers_vector() -> None:
    entry = WeightEntry(uid=1, weight=1.0)
    vector = new_envelope(WeightsComputed.of("v1", 2**31, 2**31, [entry]), key="v1",
                          producer="t")
    assert check(VALIDATOR.sign(vector), WEIGHTS) is None
    assert check(OTHER_VALIDATOR.sign(vector), WEIGHTS) == (
        "weights.computed names validator 'v1' but is signed by validator 'v2'")
    assert check(vector, WEIGHTS) is not None


def test_a_revoked_key_stops_counting() -> None:
    after = TrustSet.of(KeysTrusted(version=4, keys=[INTAKE.entry()]))
    signed = EVALUATOR.sign(score())
    assert check(signed) is None
    assert "does not trust (trusted set version 4)" in (check(signed, trust=after) or "")


def test_only_the_root_signs_trusted_sets() -> None:
    event = KeysTrusted(version=9, keys=[OUTSIDER.entry()])
    forged = EVALUATOR.sign(new_envelope(event, key="keys", producer="t"))
    raw = encode(forged)
    assert root_refusal(decode(raw), raw, ROOT) == (
        "keys.trusted not signed by the operator's root key")
    genuine = sign_envelope(new_envelope(event, key="keys", producer="t"), ROOT_PRIVATE, ROOT)
    raw = encode(genuine)
    assert root_refusal(decode(raw), raw, ROOT) is None
    block = encode(sign_envelope(new_envelope(ChainBlock(block=5), key=None, producer="t"),
                                 ROOT_PRIVATE, ROOT))
    assert "only the operator's keys.trusted sets" in (root_refusal(decode(block), block, ROOT)
                                                       or "")


def test_a_later_version_holds_and_an_older_one_replayed_changes_nothing() -> None:
    store = TrustStore.fixed(ROOT)
    newer = KeysTrusted(version=2, keys=[EVALUATOR.entry()])
    older = KeysTrusted(version=1, keys=[OUTSIDER.entry()])
    for event in (newer, older):
        store._take(new_envelope(event, key="keys", producer="t"))
    assert set(store.current.keys) == {EVALUATOR.public}


def test_decode_record_dead_letters_what_the_store_refuses() -> None:
    store = TrustStore.fixed(ROOT, TRUSTED, registry=TopicRegistry("p."))
    raw = encode(score())
    with pytest.raises(DecodeError) as caught:
        decode_record(raw, "p.scores", 0, 7, ScoreComputed, verify=store.verify)
    assert caught.value.reason.startswith("untrusted: unsigned score.computed on scores")
    assert caught.value.raw == raw and caught.value.offset == 7
    signed = encode(EVALUATOR.sign(score()))
    assert decode_record(signed, "p.scores", 0, 8, ScoreComputed,
                         verify=store.verify).signer == EVALUATOR.public


def test_a_cancellation_is_the_intakes_alone() -> None:
    cancel = new_envelope(EvaluationCancelled(
        hash=HASH, request_event_id="r", hotkey="b" * 64, block=3,
        code=RejectionCode.DUPLICATE_REPO, reason="dup", displaced_by="e", displaced_by_hash="9"),
        key=HASH, producer="t")
    from schemas.topics import CANCELLATIONS

    assert check(INTAKE.sign(cancel), CANCELLATIONS) is None
    assert check(cancel, CANCELLATIONS) is not None
    assert check(VALIDATOR.sign(cancel), CANCELLATIONS) is not None


def test_a_chain_head_is_the_chain_adapters() -> None:
    chain = Party("chain", "chain")
    trust = TrustSet.of(KeysTrusted(version=1, keys=[chain.entry()]))
    head = new_envelope(ChainBlock(block=100), key=None, producer="t")
    assert check(chain.sign(head), CHAIN_BLOCKS, trust) is None
    assert check(head, CHAIN_BLOCKS, trust) is not None


def test_the_signed_part_is_the_record_with_a_null_signature() -> None:
    signed = EVALUATOR.sign(score())
    raw = encode(signed)
    assert signed.signature is not None
    assert signed_part(raw, signed.signature) == encode(
        signed.model_copy(update={"signature": None}))
    assert signed_part(raw + b" ", signed.signature) is None


def test_the_signed_encoding_is_the_signed_envelope_encoded() -> None:
    envelope = score()
    assert signed_encoding(envelope, EVALUATOR.private, EVALUATOR.public) == encode(
        EVALUATOR.sign(envelope))
