"""Re-scoring by replaying the log, on a real broker and PostgreSQL, with the pipeline running.

- a re-score of an unknown version, hash or hotkey publishes nothing and exits 1;
- a dry run says what it would queue and publishes nothing;
- new submissions published during a re-score are scored before the re-scores still waiting
  (the order is measured on the scores' times, one evaluator);
- running the same re-score twice queues nothing twice: one request and one score per
  (hash, version);
- a re-score for a version no evaluator computes is FAILED with the reason, and frees no
  rate-limit window;
- `scoring activate` switches the leaderboard and the intake worker to the version without a
  restart.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from producers.miner import registration, submission
from producers.rescore import rescore_envelope
from schemas.events import EvaluationRequested
from speechstream.keys import create_key_file
from tests.integration.pipeline import Pipeline
from tests.scorers import SLOW_SECONDS_ENV

pytestmark = pytest.mark.integration

SCORER = "tests.scorers:SlowScorer"
OLD = 24  # submissions scored before the re-score
NEW = 3  # submissions published while it runs
SCORE_SECONDS = "0.3"


def _count(pipe: Pipeline, sql: str, *params: object) -> int:
    return pipe.query(sql, params)[0][0]


def _json(result) -> dict:  # noqa: ANN001 - a CompletedProcess
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_rescore_runs_behind_new_submissions_once_and_switches_without_restarts(
    pipeline: Pipeline, tmp_path
) -> None:
    t = pipeline.kafka.topics
    pipeline.start("worker", ["streams", "worker"])
    pipeline.start("sink", ["sink", "run"])
    pipeline.start("evaluator", ["evaluator", "run", "--scorer", SCORER],
                   **{SLOW_SECONDS_ENV: SCORE_SECONDS})
    keys = [create_key_file(tmp_path / f"miner{i}.json") for i in range(OLD + NEW + 1)]
    pipeline.send(t.registrations, *(registration(k, uid=i, block=1) for i, k in enumerate(keys)))
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM miners") == len(keys),
                  "every miner registered")
    subs = [submission(k, repo_namespace=f"m{i}", repo_name="tts", block=1000)
            for i, k in enumerate(keys)]
    pipeline.send(t.submissions, *subs[:OLD])
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM scores") == OLD,
                  "the first submissions scored (v2)", timeout_s=120)

    # Refused, nothing published.
    unknown = pipeline.cli("rescore", "--scoring-version", "v9", "--all")
    assert unknown.returncode == 1 and "unknown scoring version 'v9'" in unknown.stderr
    missing = pipeline.cli("rescore", "--scoring-version", "v1", "--hash", "123")
    assert missing.returncode == 1 and "no accepted request for hash 123" in missing.stderr
    stranger = pipeline.cli("rescore", "--scoring-version", "v1", "--hotkey", "ab" * 32)
    assert stranger.returncode == 1 and "no accepted request of hotkey" in stranger.stderr
    dry = _json(pipeline.cli("rescore", "--scoring-version", "v1", "--all", "--dry-run",
                             "--json"))
    assert (dry["selected"], len(dry["would_queue"]), dry["queued"]) == (OLD, OLD, 0)
    assert pipeline.count(t.rescores) == 0

    # The re-score, then new submissions while it runs.
    first = _json(pipeline.cli("rescore", "--scoring-version", "v1", "--all", "--json"))
    assert (first["selected"], first["queued"], first["already_queued"]) == (OLD, OLD, 0)
    v1_scores = "SELECT count(*) FROM scores WHERE scoring_version = 'v1'"
    pipeline.wait(lambda: _count(pipeline, v1_scores) >= 3, "the re-scores under way")
    pipeline.send(t.submissions, *subs[OLD:OLD + NEW])
    pipeline.wait(lambda: _count(pipeline, v1_scores) == OLD, "every re-score", timeout_s=120)
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM scores "
                                 "WHERE scoring_version = 'v2'") == OLD + NEW,
                  "the new submissions scored")

    # The order, on the evaluator's clock: once a new request was routed, at most the re-score
    # in progress (and one picked while the request was on its way) went before it.
    new_hashes = [s.payload.hash for s in subs[OLD:OLD + NEW]]
    routed = pipeline.query("SELECT max(requested_at) FROM submissions WHERE hash = ANY(%s)",
                            (new_hashes,))[0][0]
    new_done = pipeline.query("SELECT max(computed_at) FROM scores WHERE hash = ANY(%s)",
                              (new_hashes,))[0][0]
    overtaking = _count(pipeline, "SELECT count(*) FROM scores WHERE scoring_version = 'v1' "
                        "AND computed_at > %s AND computed_at < %s", routed, new_done)
    after = _count(pipeline, "SELECT count(*) FROM scores WHERE scoring_version = 'v1' "
                   "AND computed_at > %s", new_done)
    assert overtaking <= 2, f"{overtaking} re-scores went before the new submissions"
    assert after >= OLD - 10, f"only {after} re-scores were left for after the new submissions"

    # Twice: only what is new (the submissions accepted since) is queued.
    again = _json(pipeline.cli("rescore", "--scoring-version", "v1", "--all", "--json"))
    assert (again["selected"], again["queued"], again["already_queued"]) == (OLD + NEW, NEW, OLD)
    third = _json(pipeline.cli("rescore", "--scoring-version", "v1", "--all", "--json"))
    assert (third["queued"], third["already_queued"]) == (0, OLD + NEW)
    pipeline.wait(lambda: _count(pipeline, v1_scores) == OLD + NEW, "the second re-score")
    lane = pipeline.read(t.rescores, OLD + NEW)
    assert Counter((e.payload.hash, e.payload.scoring_version) for e in lane) == {
        (h, "v1"): 1 for h in {e.payload.hash for e in lane}}
    assert len(lane) == OLD + NEW
    scores = pipeline.read(t.scores, 2 * (OLD + NEW))
    per_key = Counter((e.payload.hash, e.payload.scoring_version) for e in scores)
    assert len(per_key) == 2 * (OLD + NEW) and set(per_key.values()) == {1}

    # A version no evaluator computes: FAILED with the reason; no window freed.
    failed_before = pipeline.count(t.failed)
    (one,) = [e for e in pipeline.read(t.evaluation_requests, OLD)
              if e.payload.hash == subs[0].payload.hash][:1]
    assert isinstance(one.payload, EvaluationRequested)
    pipeline.send(t.rescores, rescore_envelope(one, "v9"))
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM scores "
                                 "WHERE scoring_version = 'v9'") == 1, "the v9 re-score")
    ((status, reason),) = pipeline.query(
        "SELECT status, reason FROM scores WHERE scoring_version = 'v9'")
    assert status == "FAILED" and reason.startswith("unknown scoring version 'v9'")
    assert pipeline.count(t.failed) == failed_before

    # The switch: v2 counts until v1 is activated; then v1, and new submissions are requested
    # for v1 by the running worker.
    def standing() -> Counter:
        return Counter(pipeline.query("SELECT scoring_version, status FROM submission_standing"))

    assert standing() == {("v2", "COMPLETED"): OLD + NEW}
    status = pipeline.cli("scoring", "status")
    assert status.returncode == 0, status.stderr
    assert f"v1: {OLD + NEW} scored" in status.stdout
    activated = pipeline.cli("scoring", "activate", "v1", "--reason", "test")
    assert activated.returncode == 0, activated.stderr
    assert "scoring version v1 activated" in activated.stdout
    pipeline.wait(lambda: standing() == {("v1", "COMPLETED"): OLD + NEW}, "the switch")
    pipeline.send(t.submissions, subs[-1])
    pipeline.wait(lambda: pipeline.query(
        "SELECT scoring_version FROM submissions WHERE hash = %s",
        (subs[-1].payload.hash,)) == [("v1",)], "a new submission requested for v1")
    pipeline.wait(lambda: standing() == {("v1", "COMPLETED"): OLD + NEW + 1},
                  "the new submission scored with v1")
    # Each submission's own row still holds the version it was requested for.
    assert Counter(pipeline.query("SELECT scoring_version FROM submissions")) == {
        ("v2",): OLD + NEW, ("v1",): 1}

    # A replay of the whole log, re-scores and all, builds the same rows.
    verify = pipeline.cli("sink", "rebuild", "--verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
