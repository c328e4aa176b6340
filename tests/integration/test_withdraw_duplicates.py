"""Withdrawing a displaced duplicate's evaluation, on a real broker and PostgreSQL.

A submission that predates the holder of its repo displaces it after the holder's evaluation
request was routed; the worker withdraws that request (``evaluation.cancelled``):

- a holder displaced before any evaluator reaches it is never evaluated (no score event), and
  stands as a FAILED, withdrawn duplicate in ``submission_standing``;
- a holder already scored when displaced keeps its row in ``scores``, stands as a withdrawn
  duplicate, and a validator epoch does not count it (invalid, weight 0).
"""

from __future__ import annotations

import pytest

from producers.miner import registration, submission
from speechstream.keys import create_key_file
from tests.integration.pipeline import Pipeline
from tests.scorers import SLOW_SECONDS_ENV

pytestmark = pytest.mark.integration

SCORER = "tests.scorers:SlowScorer"
VALIDATOR = {"SPEECHSTREAM_VALIDATOR_VALIDATOR_ID": "val-w",
             "SPEECHSTREAM_VALIDATOR_EPOCH_BLOCKS": "100"}
LATE, EARLY = 2000, 1500


def _count(pipe: Pipeline, sql: str, *params: object) -> int:
    return pipe.query(sql, params)[0][0]


def _standing(pipe: Pipeline, hash_: str) -> tuple[str, float | None, str | None]:
    (row,) = pipe.query("SELECT status, score, notes FROM submission_standing WHERE hash = %s",
                        (hash_,))
    return row


def test_a_displaced_holder_is_withdrawn_and_never_counts(pipeline: Pipeline, tmp_path) -> None:
    t = pipeline.kafka.topics
    pipeline.start("worker", ["streams", "worker"])
    pipeline.start("sink", ["sink", "run"])
    keys = [create_key_file(tmp_path / f"miner{i}.json") for i in range(4)]
    pipeline.send(t.registrations, *(registration(k, uid=i, block=1) for i, k in enumerate(keys)))
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM miners") == len(keys),
                  "every miner registered")
    # uid 0 holds ns/x, uid 2 holds ns/y (later blocks); uid 1 and 3 come with earlier ones.
    holder_x = submission(keys[0], repo_namespace="ns", repo_name="x", block=LATE)
    early_x = submission(keys[1], repo_namespace="ns", repo_name="x", block=EARLY)
    holder_y = submission(keys[2], repo_namespace="ns", repo_name="y", block=LATE)
    early_y = submission(keys[3], repo_namespace="ns", repo_name="y", block=EARLY)
    hx, ex, hy, ey = (s.payload.hash for s in (holder_x, early_x, holder_y, early_y))
    pipeline.send(t.submissions, holder_x, holder_y)
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM submissions") == 2,
                  "both holders routed")

    # (a) ns/x's holder is displaced while no evaluator runs: its request is withdrawn.
    pipeline.send(t.submissions, early_x)
    pipeline.wait(lambda: pipeline.count(t.cancellations) == 1, "the withdrawal")
    (cancelled,) = pipeline.read(t.cancellations, 1)
    p = cancelled.payload
    (request,) = [e for e in pipeline.read(t.evaluation_requests, 3) if e.payload.hash == hx]
    assert (p.hash, p.request_event_id, p.displaced_by) == (hx, request.event_id,
                                                            early_x.event_id)
    assert p.reason == f"duplicate of ns/x submitted earlier at block {EARLY} (hash {ex})"

    pipeline.start("evaluator", ["evaluator", "run", "--scorer", SCORER],
                   **{SLOW_SECONDS_ENV: "0.2"})
    scored = "SELECT count(*) FROM scores WHERE hash = ANY(%s)"
    pipeline.wait(lambda: _count(pipeline, scored, [ex, hy]) == 2,
                  "the earlier ns/x and ns/y's holder scored")
    # Never evaluated: no status from an evaluator, no score event.
    assert _count(pipeline, "SELECT count(*) FROM scores WHERE hash = %s", hx) == 0
    assert _count(pipeline, "SELECT count(*) FROM status_events WHERE hash = %s "
                  "AND evaluator IS NOT NULL", hx) == 0
    assert _standing(pipeline, hx) == (
        "FAILED", None, f"withdrawn: duplicate of ns/x submitted earlier at block {EARLY} "
        f"(hash {ex})")
    assert _standing(pipeline, ex)[0] == "COMPLETED"

    # (b) ns/y's holder, already scored, is displaced: it keeps its score row, not its place.
    pipeline.send(t.submissions, early_y)
    pipeline.wait(lambda: _count(pipeline, scored, [ey]) == 1, "the earlier ns/y scored")
    pipeline.wait(lambda: _count(pipeline, "SELECT count(*) FROM withdrawals") == 2,
                  "both withdrawals in the sink")
    (kept,) = pipeline.query("SELECT status, total_score FROM scores WHERE hash = %s", (hy,))
    assert kept[0] == "COMPLETED" and kept[1] is not None
    assert _standing(pipeline, hy) == (
        "FAILED", None, f"withdrawn: duplicate of ns/y submitted earlier at block {EARLY} "
        f"(hash {ey})")
    scores = pipeline.read(t.scores, 3)
    assert sorted(e.payload.hash for e in scores) == sorted([ex, hy, ey])

    # A validator epoch counts neither holder.
    pipeline.start("validator", ["validator", "run"], **VALIDATOR)
    tick = pipeline.cli("chain", "tick", "--block", str(LATE + 100))
    assert tick.returncode == 0, tick.stderr
    (vector,) = [e.payload for e in pipeline.read(t.weights, 1)]
    by_uid = {e.uid: e for e in vector.entries}
    for uid, repo, early in ((0, "ns/x", ex), (2, "ns/y", ey)):
        entry = by_uid[uid]
        assert entry.invalid == (f"withdrawn: duplicate of {repo} submitted earlier at block "
                                 f"{EARLY} (hash {early})"), entry
        assert entry.weight == 0.0
    # It stands as the leaderboard shows it (the ledger's one answer): FAILED, scoreless; its
    # score stays in ``scores`` and on the log, and counts for nothing.
    assert (by_uid[2].status, by_uid[2].score) == ("FAILED", None)
    assert by_uid[1].invalid is None and by_uid[3].invalid is None
    assert by_uid[1].weight > 0 and by_uid[3].weight > 0
