"""The intake worker under a root of trust, without a broker: what it writes carries the
intake's signature, and what it reads counts only when the right role signed it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from cli.commands.streams import operator_key_of
from schemas.codec import decode, encode
from schemas.envelope import Envelope, new_envelope
from schemas.events import (
    DeadLetter,
    EvaluationRequested,
    MinerRegistered,
    SubmissionFailed,
    UidHandover,
    UidRevoked,
)
from schemas.topics import TopicRegistry
from schemas.trust import refusal
from speechstream.settings import TrustSettings
from speechstream.signer import Signer
from streams.agents.emit import emit
from streams.deadletter import decode_or_dead_letter
from streams.metrics import StreamsMetrics
from streams.settings import StreamsSettings
from tests.metric_support import counted
from tests.trust_support import Keys

TOPICS = TopicRegistry()
HONEST = "a" * 64
ATTACKER = "b" * 64


@dataclass
class Sent:
    """What a fake producer or topic was asked to send."""

    records: list[tuple[str, bytes, bytes]] = field(default_factory=list)

    async def send(self, topic: str, key: bytes, value: bytes, *_args: Any) -> None:
        self.records.append((topic, key, value))


class FakeTopic:
    """The little of a Faust topic ``emit`` and ``decode_or_dead_letter`` use."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.producer = Sent()
        self.app = self
        self.letters: list[bytes] = []

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, *, key: bytes | None, value: bytes) -> None:
        self.letters.append(value)


@dataclass
class FakeMessage:
    topic: str
    partition: int = 0
    offset: int = 7


@dataclass
class FakeEvent:
    key: bytes | None
    value: bytes
    message: FakeMessage


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    keys = Keys.create(tmp_path / "keys")
    keys.add("intake", "intake")
    keys.add("evaluator", "ev")
    return keys


def _metrics() -> StreamsMetrics:
    return StreamsMetrics.create(CollectorRegistry())


def _request() -> EvaluationRequested:
    return EvaluationRequested(hash="42", hotkey=HONEST, uid=3, repo_namespace="ns",
                               repo_name="model", block=100, source_event_id="src")


def _decode(keys: Keys, env: Envelope, topic: str, signer: Signer | None = None,
            metrics: StreamsMetrics | None = None) -> tuple[Envelope | None, FakeTopic]:
    deadletter = FakeTopic(TOPICS.deadletter)
    event = FakeEvent(b"k", encode(env), FakeMessage(topic))
    store = keys.store()
    got = asyncio.run(decode_or_dead_letter(
        event, deadletter, metrics or _metrics(), (SubmissionFailed, MinerRegistered, UidHandover,
                                        UidRevoked, EvaluationRequested),
        verify=store.verify, signer=signer))
    return got, deadletter


def test_an_emitted_envelope_carries_the_intakes_signature(keys: Keys) -> None:
    topic = FakeTopic(TOPICS.evaluation_requests)
    source = new_envelope(_request(), key="42", producer="t")
    asyncio.run(emit(topic, _request(), key="42", source=source, stage="requested",
                     signer=keys.signer("intake", "intake")))
    [(name, key, raw)] = topic.producer.records
    assert (name, key) == (TOPICS.evaluation_requests, b"42")
    env = decode(raw)
    assert env.signer == keys.signer("intake", "intake").public_key
    store = keys.store()
    spec = TOPICS.spec_of(name)
    assert refusal(env, raw, spec, store.current, store.root) is None
    # The same record is refused when its body is changed after signing.
    tampered = raw.replace(b'"uid":3', b'"uid":4')
    assert tampered != raw
    assert refusal(decode(tampered), tampered, spec, store.current, store.root) is not None


def test_an_unsigned_emit_stays_unsigned_and_is_refused(keys: Keys) -> None:
    topic = FakeTopic(TOPICS.evaluation_requests)
    source = new_envelope(_request(), key="42", producer="t")
    asyncio.run(emit(topic, _request(), key="42", source=source, stage="requested"))
    [(name, _key, raw)] = topic.producer.records
    env = decode(raw)
    assert env.signature is None
    store = keys.store()
    assert refusal(env, raw, TOPICS.spec_of(name), store.current, store.root) is not None


def _letter(deadletter: FakeTopic) -> Envelope:
    [raw] = deadletter.letters
    return decode(raw)


def test_an_unsigned_submission_failed_is_dead_lettered(keys: Keys) -> None:
    failed = new_envelope(SubmissionFailed(hash="42", hotkey=HONEST, block=100,
                                           scoring_version="v2", score_event_id="s"),
                          key=HONEST, producer="attacker")
    metrics = _metrics()
    got, deadletter = _decode(keys, failed, TOPICS.failed, keys.signer("intake", "intake"),
                              metrics)
    assert got is None
    assert counted(metrics.dead_letters) == {("speechstream-streams", "untrusted"): 1}
    letter = _letter(deadletter)
    assert isinstance(letter.payload, DeadLetter)
    assert letter.payload.error.startswith("untrusted: unsigned submission.failed")
    # The dead letter itself is the intake's, signed.
    assert letter.signer == keys.signer("intake", "intake").public_key
    store = keys.store()
    raw = deadletter.letters[0]
    assert refusal(letter, raw, TOPICS.spec_of(TOPICS.deadletter), store.current,
                   store.root) is None


def test_an_evaluator_signed_submission_failed_counts(keys: Keys) -> None:
    failed = keys.signer("evaluator", "ev").sign(new_envelope(
        SubmissionFailed(hash="42", hotkey=HONEST, block=100, scoring_version="v2",
                         score_event_id="s"), key=HONEST, producer="evaluator"))
    got, deadletter = _decode(keys, failed, TOPICS.failed)
    assert got is not None and isinstance(got.payload, SubmissionFailed)
    assert deadletter.letters == []


def test_an_evaluator_signed_uid_handover_is_dead_lettered(keys: Keys) -> None:
    handover = keys.signer("evaluator", "ev").sign(new_envelope(
        UidHandover(uid=3, hotkey=ATTACKER, previous=HONEST, block=100, source_event_id="s"),
        key=ATTACKER, producer="attacker"))
    got, deadletter = _decode(keys, handover, TOPICS.claimed)
    assert got is None
    reason = _letter(deadletter).payload.error  # type: ignore[union-attr]
    assert reason.startswith("untrusted: uid.handover")
    assert "evaluator 'ev'" in reason


def test_an_intake_signed_uid_handover_counts(keys: Keys) -> None:
    handover = keys.signer("intake", "intake").sign(new_envelope(
        UidHandover(uid=3, hotkey=ATTACKER, previous=HONEST, block=100, source_event_id="s"),
        key=ATTACKER, producer="speechstream-streams"))
    got, deadletter = _decode(keys, handover, TOPICS.claimed)
    assert got is not None and isinstance(got.payload, UidHandover)
    assert deadletter.letters == []


def test_an_unsigned_request_on_submissions_accepted_is_dead_lettered(keys: Keys) -> None:
    forged = new_envelope(_request(), key="ns/model", producer="attacker")
    got, deadletter = _decode(keys, forged, TOPICS.accepted)
    assert got is None
    assert _letter(deadletter).payload.error.startswith(  # type: ignore[union-attr]
        "untrusted: unsigned evaluation.requested")


def test_a_miners_registration_on_the_entry_topic_passes_the_floor(keys: Keys) -> None:
    # The entry topic's events carry the miner's payload signature, which the intake's own
    # rules check (BAD_SIGNATURE): the floor lets an unsigned envelope through.
    registered = new_envelope(MinerRegistered(hotkey=HONEST, uid=3, block=100,
                                              signature="0" * 128),
                              key="3", producer="miner")
    got, deadletter = _decode(keys, registered, TOPICS.registrations)
    assert got is not None
    assert deadletter.letters == []


def test_the_operator_key_defaults_to_the_root() -> None:
    root = "c" * 64
    trust = TrustSettings(operator_key=root)
    assert operator_key_of(StreamsSettings(), trust).operator_key == root
    assert operator_key_of(StreamsSettings(operator_key=root), trust).operator_key == root
    own = "d" * 64
    assert operator_key_of(StreamsSettings(operator_key=own),
                           TrustSettings(insecure=True)).operator_key == own
    # An attestation key of its own (the REST API's, so the root stays off the API's host).
    assert operator_key_of(StreamsSettings(operator_key=own), trust).operator_key == own
