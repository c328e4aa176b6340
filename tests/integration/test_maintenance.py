"""`speechstream maintenance` on a real broker and PostgreSQL.

- a submission QUEUED with no evaluator in the group is listed (exit 1) with the command that
  fixes it; a status with no request behind it is listed as such;
- with an evaluator running (a member of the group) nothing is said to wait for want of one;
- dead letters (malformed records the sink and the intake worker met) are counted by consumer
  and reason;
- a model cache over its budget is listed, and evicted (least recently used first) with
  --apply; nothing else is changed;
- a bad argument or a database that does not answer is exit 2.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from producers.miner import registration, submission
from schemas.envelope import new_envelope
from schemas.events import EvaluationStatusChanged
from speechstream.kafka.admin import group_members_with_partitions
from speechstream.keys import create_key_file
from tests.integration.pipeline import Pipeline
from tests.scorers import SLOW_SECONDS_ENV

pytestmark = pytest.mark.integration

ORPHAN = "123"  # a hash with a PRECHECK status but no evaluation request


def _fake_cache(root: Path) -> dict[str, str]:
    """Three 1000-byte snapshots used 5, 3 and 2 hours ago, and a 1500-byte budget."""
    now = datetime.now(UTC).timestamp()
    for name, hours in (("s0", 5), ("s1", 3), ("s2", 2)):
        weights = root / name / "model.safetensors"
        weights.parent.mkdir(parents=True)
        weights.write_bytes(b"\0" * 1000)
        os.utime(weights, (now - hours * 3600, now - hours * 3600))
    return {"SPEECHSTREAM_SCORING_CACHE_DIR": str(root),
            "SPEECHSTREAM_SCORING_CACHE_BUDGET_BYTES": "1500"}


def waiting_status(section: dict, hash_: str) -> str | None:
    """The status a hash is listed with among the waiting submissions (None: not listed)."""
    return next((w["status"] for w in section["waiting"] if w["hash"] == hash_), None)


def _report(pipe: Pipeline, *args: str, **env: str) -> tuple[int, dict]:
    done = pipe.cli("maintenance", "--json", *args, **env)
    assert done.returncode in (0, 1), done.stderr
    doc = json.loads(done.stdout)
    return done.returncode, {s["name"]: s for s in doc["sections"]}


def test_maintenance_lists_and_applies(pipeline: Pipeline, tmp_path: Path) -> None:
    t = pipeline.kafka.topics
    cache = _fake_cache(tmp_path / "models")
    pipeline.start("worker", ["streams", "worker"])
    pipeline.start("sink", ["sink", "run"])
    key = create_key_file(tmp_path / "miner.json")
    pipeline.send(t.registrations, registration(key, uid=0, block=1))
    pipeline.send_raw(t.miners, b"not json", key="x")  # the sink's dead letter (compacted: keyed)
    pipeline.send_raw(t.submissions, b"not json either")  # the intake worker's
    pipeline.send(t.evaluation_status, new_envelope(
        EvaluationStatusChanged(hash=ORPHAN, status="PRECHECK"), key=ORPHAN, producer="test",
        time=datetime.now(UTC) - timedelta(hours=2)))
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM miners")[0][0] == 1,
                  "the miner registered")
    sub = submission(key, repo_namespace="m0", repo_name="tts", block=1000)
    pipeline.send(t.submissions, sub)
    queued = "SELECT count(*) FROM submissions WHERE hash = %s AND request_event_id IS NOT NULL"
    pipeline.wait(lambda: pipeline.query(queued, (sub.payload.hash,))[0][0] == 1,
                  "the submission QUEUED")
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM dead_letters")[0][0] == 2,
                  "both dead letters written")

    # No evaluator: listed, exit 1, the command to run; nothing changed.
    code, s = _report(pipeline, "--queued-after", "0s", **cache)
    req = s["evaluation requests"]
    assert code == 1 and req["needs_hand"] and req["no_evaluator"]
    assert req["group_members"] == 0
    assert set(req["lag"]) == {t.evaluation_requests, t.rescores}
    assert req["lag"][t.evaluation_requests] == 1
    assert waiting_status(req, sub.payload.hash) == "QUEUED"
    orphan = next(w for w in req["waiting"] if w["hash"] == ORPHAN)
    assert orphan["age_s"] > 7000 and req["without_request"] == [ORPHAN]
    assert "speechstream evaluator run" in req["action"]
    letters = s["dead letters"]
    assert letters["needs_hand"] and letters["total"] == 2
    assert sorted((g["reason"], g["count"]) for g in letters["groups"]) == [
        ("not JSON", 1), ("not JSON", 1)]
    assert len({g["consumer"] for g in letters["groups"]}) == 2
    assert s["model cache"]["needs_hand"] and s["model cache"]["would_evict"] == ["s0", "s1"]
    assert sorted(os.listdir(cache["SPEECHSTREAM_SCORING_CACHE_DIR"])) == ["s0", "s1", "s2"]

    # --apply evicts the least recently used snapshots; the rest still needs a hand.
    applied = pipeline.cli("maintenance", "--queued-after", "0s", "--apply", **cache)
    assert applied.returncode == 1, applied.stderr
    assert "== model cache: ok" in applied.stdout and "evicted s0" in applied.stdout
    assert "   done: deleted the least recently used snapshots" in applied.stdout
    assert "   to do: start an evaluator" in applied.stdout
    assert "== evaluation requests: NEEDS A HAND" in applied.stdout
    assert applied.stdout.rstrip().endswith("something needs a hand (after --apply)")
    assert sorted(os.listdir(cache["SPEECHSTREAM_SCORING_CACHE_DIR"])) == ["s2"]
    assert pipeline.query("SELECT count(*) FROM dead_letters")[0][0] == 2

    # An evaluator in the group: the submission no longer waits for want of one.
    evaluator = pipeline.start(
        "evaluator", ["evaluator", "run", "--scorer", "tests.scorers:SlowScorer"],
        **{SLOW_SECONDS_ENV: "60"})  # keeps the submission RUNNING while the report is read
    pipeline.wait(lambda: group_members_with_partitions(
        pipeline.kafka, pipeline.env["SPEECHSTREAM_EVALUATOR_GROUP_ID"]) == 1,
        "the evaluator in its group")
    code, s = _report(pipeline, "--queued-after", "0s", **cache)
    req = s["evaluation requests"]
    assert not req["no_evaluator"] and req["group_members"] == 1
    assert "want of one" in req["summary"]
    assert waiting_status(req, sub.payload.hash) in ("QUEUED", "PRECHECK", "RUNNING")
    assert req["without_request"] == [ORPHAN]  # still: no evaluator will take it
    assert not s["model cache"]["needs_hand"]
    evaluator.stop(timeout_s=1)  # mid-evaluation: no need to wait for it

    # Usage and connection errors.
    bad = pipeline.cli("maintenance", "--queued-after", "soon")
    assert bad.returncode == 2 and "not a duration" in bad.stderr
    down = pipeline.cli("maintenance", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert down.returncode == 2 and "cannot read PostgreSQL" in down.stderr
