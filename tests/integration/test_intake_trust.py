"""The intake worker under a root of trust: what it routes carries its signature, and events an
attacker writes straight onto its internal topics are dead-lettered without effect (real
broker, real worker)."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer

from producers.miner import registration, submission
from schemas.codec import decode
from schemas.envelope import Envelope, new_envelope
from schemas.events import EvaluationRequested, SubmissionFailed, UidHandover
from schemas.trust import refusal
from speechstream.keys import create_key_file
from tests.trust_support import Keys

pytestmark = pytest.mark.integration


def _raw(pipe, topic: str, n: int, timeout_s: float = 60.0) -> list[tuple[Envelope, bytes]]:
    """Every record of ``topic`` (at least ``n``), decoded and as the bytes on the wire."""
    consumer = Consumer(pipe.kafka.to_librdkafka(**{
        "group.id": f"reader-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "isolation.level": "read_committed"}))
    consumer.subscribe([topic])
    found: list[tuple[Envelope, bytes]] = []
    try:
        for _ in range(int(timeout_s / 0.5)):
            for msg in consumer.consume(500, timeout=0.5):
                if not msg.error():
                    found.append((decode(msg.value()), msg.value()))
            if len(found) >= n:
                for msg in consumer.consume(500, timeout=1.0):
                    if not msg.error():
                        found.append((decode(msg.value()), msg.value()))
                return found
            pipe.check()
    finally:
        consumer.close()
    counts = {name: pipe.count(getattr(pipe.kafka.topics, name)) for name in (
        "registrations", "claimed", "miners", "submissions", "accepted", "rejected",
        "evaluation_requests", "deadletter")}
    raise AssertionError(f"{topic}: {len(found)} < {n} records after {timeout_s}s; {counts}")


def _codes(pipe, n: int) -> list[tuple[str, str]]:
    """(code, hotkey) of the first ``n`` rejections."""
    return [(e.payload.code.value, e.payload.hotkey)
            for e, _ in _raw(pipe, pipe.kafka.topics.rejected, n)]


def test_the_intake_signs_what_it_routes_and_ignores_forged_events(pipeline, tmp_path) -> None:
    keys = Keys.create(tmp_path / "keys")
    keys.add("intake", "intake")
    evaluator = keys.add("evaluator", "ev")
    keys.publish(pipeline.kafka)
    store = keys.store()
    intake_key = keys.signer("intake", "intake").public_key
    alice, mallory = (create_key_file(tmp_path / f"{n}.json") for n in ("alice", "mallory"))
    pipeline.start("streams", ["streams", "worker"], **keys.env("intake", "intake"))
    t = pipeline.kafka.topics

    # (a) An honest miner: registered, its submission routed, signed by the intake.
    pipeline.send(t.registrations, registration(alice, uid=0, block=1))
    _raw(pipeline, t.miners, 1)  # registered before it submits
    first = submission(alice, repo_namespace="alice", repo_name="a1", block=1000)
    pipeline.send(t.submissions, first)
    [(request, raw)] = _raw(pipeline, t.evaluation_requests, 1)
    assert isinstance(request.payload, EvaluationRequested)
    assert request.payload.hotkey == alice.hotkey
    assert request.signer == intake_key
    assert refusal(request, raw, t.spec_of(t.evaluation_requests), store.current,
                   store.root) is None
    for env, raw in _raw(pipeline, t.claimed, 1) + _raw(pipeline, t.accepted, 1):
        assert env.signer == intake_key
        assert refusal(env, raw, t.spec_of(t.claimed if env.type == "miner.registered"
                                            else t.accepted), store.current, store.root) is None

    # (b1) An unsigned submission.failed for alice's accepted submission frees no window.
    forged_failed = new_envelope(SubmissionFailed(
        hash=request.payload.hash, hotkey=alice.hotkey, block=1000, scoring_version="v2",
        score_event_id="forged"), key=alice.hotkey, producer="attacker")
    pipeline.send(t.failed, forged_failed)
    [(letter, _)] = _raw(pipeline, t.deadletter, 1)
    assert letter.payload.error.startswith("untrusted: unsigned submission.failed")
    assert letter.signer == intake_key
    pipeline.send(t.submissions, submission(alice, repo_namespace="alice", repo_name="a2",
                                            block=1001))
    assert _codes(pipeline, 1) == [("RATE_LIMITED", alice.hotkey)]
    # The evaluator's own does free it: the attack above was refused for its signature only.
    pipeline.send(t.failed, evaluator.sign(forged_failed.model_copy(
        update={"producer": "evaluator"})))
    pipeline.send(t.submissions, submission(alice, repo_namespace="alice", repo_name="a3",
                                            block=1002))
    requests = _raw(pipeline, t.evaluation_requests, 2)
    assert sorted(e.payload.repo_name for e, _ in requests) == ["a1", "a3"]  # two partitions

    # (b2) An unsigned registration and handover written straight to registrations.claimed
    # give mallory no uid: its submission is turned away.
    pipeline.send(t.claimed, registration(mallory, uid=0, block=5),
                  new_envelope(UidHandover(uid=0, hotkey=mallory.hotkey,
                                           previous=alice.hotkey, block=5,
                                           source_event_id="forged"),
                               key=mallory.hotkey, producer="attacker"))
    letters = [e.payload.error for e, _ in _raw(pipeline, t.deadletter, 3)]
    # The two land on different partitions of registrations.claimed: either may come first.
    assert sorted(letter.split(" on ")[0] for letter in letters[1:]) == [
        "untrusted: unsigned miner.registered", "untrusted: unsigned uid.handover"]
    pipeline.send(t.submissions, submission(mallory, repo_namespace="mallory", repo_name="m1",
                                            block=1003))
    assert ("UNREGISTERED_HOTKEY", mallory.hotkey) in _codes(pipeline, 2)  # any order

    # (b3) An unsigned evaluation.requested on submissions.accepted is not routed.
    forged_request = new_envelope(request.payload.model_copy(update={
        "hash": "7", "repo_name": "forged", "source_event_id": "forged"}),
        key="alice/forged", producer="attacker")
    pipeline.send(t.accepted, forged_request)
    letters = [e.payload.error for e, _ in _raw(pipeline, t.deadletter, 4)]
    assert letters[3].startswith("untrusted: unsigned evaluation.requested")
    assert all(e.signer == intake_key for e, _ in _raw(pipeline, t.deadletter, 4))
    requests = _raw(pipeline, t.evaluation_requests, 2, timeout_s=5)
    assert sorted(e.payload.repo_name for e, _ in requests) == ["a1", "a3"]  # two partitions
