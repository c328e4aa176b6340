"""The Faust validation worker on a real broker: routing, rejections, dead letters, restarts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers.keys import Hotkey
from producers.miner import registration, submission
from schemas.envelope import Envelope, new_envelope
from schemas.events import DeadLetter, RejectionCode, SubmissionRejected
from schemas.signing import generate_key
from speechstream.settings import KafkaSettings
from tests.integration.pipeline import Pipeline, raw_envelope

pytestmark = pytest.mark.integration


@pytest.fixture
def worker_env(kafka_settings: KafkaSettings, tmp_path: Path) -> Iterator[Pipeline]:
    """Services and topic reads against this test's topics (no database needed)."""
    pipe = Pipeline(kafka_settings, "", tmp_path)
    yield pipe
    pipe.stop()


def _key() -> Hotkey:
    return Hotkey(*generate_key())


def _sub(key: Hotkey, name: str, block: int, **kw: object) -> Envelope:
    return submission(key, repo_namespace="ns", repo_name=name, block=block, **kw)


def _rejections(pipe: Pipeline, n: int) -> dict[str, SubmissionRejected]:
    """At least ``n`` rejections by source event id."""
    found = pipe.read(pipe.kafka.topics.rejected, n)
    return {e.payload.source_event_id: e.payload for e in found}


def test_valid_events_flow_and_every_bad_one_is_turned_away(worker_env: Pipeline) -> None:
    pipe, t = worker_env, worker_env.kafka.topics
    pipe.start("streams", ["streams", "worker"])
    a, b, d, squatter, stranger = _key(), _key(), _key(), _key(), _key()
    regs = [registration(a, uid=1, block=1), registration(b, uid=2, block=1),
            registration(d, uid=3, block=1)]
    squat = registration(squatter, uid=1, block=5)
    pipe.send(t.registrations, *regs, squat)
    pipe.read(t.miners, 3)  # the registry is known before submissions arrive

    good_a, good_b = _sub(a, "a1", 1_000), _sub(b, "b1", 1_000)
    too_soon = _sub(a, "a2", 1_000 + 28_799)
    signed = _sub(b, "b2", 90_000).payload
    forged = new_envelope(signed.model_copy(update={"block": 90_001}), key=b.hotkey,
                          producer="test")
    wrong_hash = _sub(b, "b3", 90_000, hash_override="12345")
    unregistered = _sub(stranger, "s1", 1_000)
    dup_repo = _sub(b, "a1", 60_000)  # a's repo, later block
    good_d = _sub(d, "d1", 2_000)
    pipe.send(t.submissions, good_a, good_b, too_soon, forged, wrong_hash, unregistered,
              dup_repo)
    future = json.loads(raw_envelope(good_d))
    future["schema_version"] = 2
    pipe.send_raw(t.submissions, b"\x00 not json {", key=b.hotkey)
    pipe.send_raw(t.submissions, json.dumps(future).encode(), key=d.hotkey)
    pipe.send_raw(t.submissions, b"x" * (300 * 1024), key=d.hotkey)
    pipe.send(t.submissions, good_d)  # a valid event after the bad ones still flows

    expected = {
        squat.event_id: RejectionCode.UID_TAKEN,
        too_soon.event_id: RejectionCode.RATE_LIMITED,
        forged.event_id: RejectionCode.BAD_SIGNATURE,
        wrong_hash.event_id: RejectionCode.HASH_MISMATCH,
        unregistered.event_id: RejectionCode.UNREGISTERED_HOTKEY,
        dup_repo.event_id: RejectionCode.DUPLICATE_REPO,
    }
    rejected = _rejections(pipe, len(expected))
    assert {k: v.code for k, v in rejected.items()} == expected
    assert "1 more blocks to wait" in rejected[too_soon.event_id].message
    assert all(r.message for r in rejected.values())

    requests = pipe.read(t.evaluation_requests, 3)
    good = {e.payload.hash for e in (good_a, good_b, good_d)}
    # The two a1 submissions travel on different hotkey partitions: when the later one reaches
    # the duplicate check first it is routed, then displaced (and rejected) by the earlier one.
    assert good <= {e.payload.hash for e in requests} <= good | {dup_repo.payload.hash}
    assert {e.payload.uid for e in requests} >= {1, 2, 3}
    queued = pipe.read(t.evaluation_status, len(requests))
    assert {e.payload.hash for e in queued} == {e.payload.hash for e in requests}
    assert {e.payload.status for e in queued} == {"QUEUED"}
    assert all(e.key == e.payload.hash for e in requests + queued)

    letters = [e.payload for e in pipe.read(t.deadletter, 3)]
    assert all(isinstance(p, DeadLetter) for p in letters)
    reasons = " | ".join(sorted(p.error for p in letters))
    assert "not JSON" in reasons
    assert "unsupported schema version 2" in reasons
    assert "oversize payload" in reasons
    # Exactly these and nothing more: no duplicate routing.
    assert pipe.count(t.evaluation_requests) == len(requests)
    assert pipe.count(t.rejected) == len(expected)


def test_a_restarted_worker_keeps_its_tables(worker_env: Pipeline) -> None:
    pipe, t = worker_env, worker_env.kafka.topics
    worker = pipe.start("streams", ["streams", "worker"])
    a, b, squatter = _key(), _key(), _key()
    pipe.send(t.registrations, registration(a, uid=7, block=1), registration(b, uid=8, block=1))
    pipe.read(t.miners, 2)
    first = _sub(a, "x", 1_000)
    pipe.send(t.submissions, first)
    pipe.read(t.evaluation_requests, 1)
    worker.stop()
    assert worker.process is not None and worker.process.returncode == 0

    pipe.start("streams", ["streams", "worker"])
    squat = registration(squatter, uid=7, block=9)
    again = _sub(a, "y", 1_100)
    dup = _sub(b, "x", 50_000)
    pipe.send(t.registrations, squat)
    pipe.send(t.submissions, first, again, dup)  # ``first`` again is a replay: no new event
    rejected = _rejections(pipe, 3)
    assert {k: v.code for k, v in rejected.items()} == {
        squat.event_id: RejectionCode.UID_TAKEN,
        again.event_id: RejectionCode.RATE_LIMITED,
        dup.event_id: RejectionCode.DUPLICATE_REPO,
    }
    assert pipe.count(t.evaluation_requests) == 1
