"""What one writer's record can no longer do at the intake (real broker, worker, sink and
PostgreSQL): a uid outside the subnet, numbers beyond what the database holds, a signed event
re-sent under another event id."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from producers.miner import registration, submission
from schemas.signing import sign
from speechstream.keys import Hotkey, create_key_file

pytestmark = pytest.mark.integration


def _forged(key: Hotkey, payload: dict) -> bytes:
    """A record signed by ``key`` that the schemas refuse: built by hand, as an attacker
    would, with a fresh envelope id."""
    fields = dict(payload)
    payload = {**fields, "signature": sign(key.private_key, fields)}
    return json.dumps({
        "event_id": str(uuid.uuid4()), "type": payload["type"], "schema_version": 1,
        "key": None, "time": datetime.now(UTC).isoformat(), "producer": "attacker",
        "payload": payload,
    }).encode()


def _count(pipe, statement: str, *params) -> int:
    return pipe.query(statement, params)[0][0]


def test_out_of_bounds_and_replayed_events_are_refused(pipeline, tmp_path) -> None:
    alice, mallory = (create_key_file(tmp_path / f"{n}.json") for n in ("alice", "mallory"))
    pipeline.start("streams", ["streams", "worker"])
    pipeline.start("sink", ["sink", "run"])
    t = pipeline.kafka.topics

    pipeline.send(t.registrations, registration(alice, uid=0, block=1),
                  registration(mallory, uid=300, block=1))
    # Numbers no schema allows: a uid beyond any subnet, a block beyond any chain (it once
    # stopped the sink for good through the rejection that carried it).
    pipeline.send_raw(t.registrations, _forged(mallory, {
        "type": "miner.registered", "hotkey": mallory.hotkey, "uid": 2**31, "coldkey": None,
        "block": 1}))
    pipeline.send_raw(t.submissions, _forged(mallory, {
        "type": "submission.published", "repo_namespace": "m", "repo_name": "x",
        "revision": None, "config_template": "default", "competition_id": "d1",
        "hotkey": mallory.hotkey, "block": 2**63, "hash": "1"}), key=mallory.hotkey)
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM dead_letters") == 2,
                  "two dead letters")
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM rejections") == 1,
                  "mallory's registration refused")
    (code, message), = pipeline.query("SELECT code, message FROM rejections")
    assert (code, message) == ("UID_OUT_OF_RANGE", "uid 300 is not in this subnet (0 to 255)")
    errors = [row[0] for row in pipeline.query("SELECT error FROM dead_letters")]
    assert any("less than 4096" in e for e in errors), errors
    assert any("less than 4294967296" in e for e in errors), errors
    pipeline.wait(lambda: pipeline.query("SELECT hotkey, uid FROM miners") == [(alice.hotkey, 0)],
                  "alice alone registered")

    # A signed submission, then the very same signed content under a new envelope id.
    first = submission(alice, repo_namespace="alice", repo_name="a1", block=1000)
    pipeline.send(t.submissions, first)
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM submissions") == 1,
                  "alice's submission")
    pipeline.send(t.submissions, first.model_copy(update={"event_id": str(uuid.uuid4())}))
    # ...and a second repo inside the rate-limit window: the replay freed nothing.
    pipeline.send(t.submissions, submission(alice, repo_namespace="alice", repo_name="a2",
                                            block=1100))
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM rejections") == 3,
                  "the replay and the second repo refused")
    codes = [row[0] for row in pipeline.query(
        "SELECT code FROM rejections WHERE hotkey = %s ORDER BY time", (alice.hotkey,))]
    assert codes == ["EVENT_ID_MISMATCH", "RATE_LIMITED"]
    assert pipeline.query("SELECT request_event_id IS NOT NULL, block FROM submissions") == [
        (True, 1000)]
    pipeline.check()
