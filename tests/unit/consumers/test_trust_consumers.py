"""The evaluator's, auditor's and validator's reads under the trusted keys (no broker): what
their readers let count, through ``decode_record(..., verify=store.verify)``."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.codec import encode
from schemas.envelope import Envelope, new_envelope
from schemas.events import ScoreComputed, WeightsComputed
from speechstream.kafka.records import DecodeError, decode_record
from speechstream.ledger import Ledger
from speechstream.settings import KafkaSettings
from tests.trust_support import Keys

HASH = "12345"
TOPICS = KafkaSettings().topics


def _score(evaluator: str) -> Envelope:
    event = ScoreComputed(hash=HASH, scoring_version="v2", evaluator=evaluator,
                          status="FAILED", reason="E_TEST: no model",
                          request_event_id="req-1")
    return new_envelope(event, key=HASH, producer="test")


def _vector(validator: str, epoch: int) -> Envelope:
    return new_envelope(WeightsComputed.of(validator, epoch, 1000, []),
                        key=validator, producer="test")


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    keys = Keys.create(tmp_path / "keys")
    keys.add("evaluator", "e1-cpu")
    keys.add("evaluator", "e2-cpu")
    keys.add("validator", "v1")
    keys.add("validator", "v2")
    return keys


def _read(env: Envelope, topic: str, keys: Keys) -> Envelope:
    return decode_record(encode(env), topic, 0, 0, verify=keys.store().verify)


def test_forged_scores_never_reach_the_scored_index(keys: Keys) -> None:
    ledger = Ledger()
    with pytest.raises(DecodeError, match="untrusted"):
        _read(_score("e1-cpu"), TOPICS.scores, keys)  # unsigned
    other = keys.signer("evaluator", "e2-cpu").sign(_score("e1-cpu"))
    with pytest.raises(DecodeError, match="untrusted"):
        _read(other, TOPICS.scores, keys)  # a trusted key naming another evaluator
    assert not ledger.has_score(HASH, "v2")
    own = keys.signer("evaluator", "e1-cpu").sign(_score("e1-cpu"))
    ledger.apply(_read(own, TOPICS.scores, keys))
    assert ledger.has_score(HASH, "v2")


def test_a_validator_key_cannot_write_a_score(keys: Keys) -> None:
    forged = keys.signer("validator", "v1").sign(_score("v1"))
    with pytest.raises(DecodeError, match="untrusted"):
        _read(forged, TOPICS.scores, keys)


def test_forged_vectors_are_not_restored(keys: Keys) -> None:
    with pytest.raises(DecodeError, match="untrusted"):
        _read(_vector("v1", 2**31), TOPICS.weights, keys)
    by_other = keys.signer("validator", "v2").sign(_vector("v1", 2**31))
    with pytest.raises(DecodeError, match="untrusted"):
        _read(by_other, TOPICS.weights, keys)
    own = keys.signer("validator", "v1").sign(_vector("v1", 3))
    payload = _read(own, TOPICS.weights, keys).payload
    assert isinstance(payload, WeightsComputed) and payload.epoch == 3
