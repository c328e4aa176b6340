"""The sink on a real broker and database: idempotent replays, rebuilds, read_committed."""

from __future__ import annotations

import psycopg
import pytest
from confluent_kafka import Producer

from schemas import (
    EvaluationRequested,
    EvaluationStatusChanged,
    MinerRegistered,
    SampleResult,
    ScoreComputed,
    SubmissionRejected,
    new_envelope,
)
from schemas.codec import encode
from schemas.fields import RejectionCode
from sinks.exceptions import SinkError
from sinks.postgres import PostgresWriter
from sinks.queries import counts, leaderboard

pytestmark = pytest.mark.integration

HK = "ab" * 32
TABLES = {
    "miners": "hotkey, uid, block, event_id",
    "submissions": "hash, uid, repo_name, status, status_rank, score, notes, request_event_id",
    "status_events": "event_id, hash, status",
    "scores": "hash, scoring_version, status, total_score, event_id",
    "sample_results": "hash, index, ce, wer, score",
    "rejections": "event_id, code",
    "dead_letters": "event_id, error, raw",
}


def _snapshot(pipe) -> dict[str, list]:
    return {t: pipe.query(f"SELECT {cols} FROM {t} ORDER BY 1, 2") for t, cols in TABLES.items()}  # noqa: S608


def _events(n: int):
    out = []
    for i in range(n):
        h = str(1000 + i)
        req = EvaluationRequested(hash=h, hotkey=HK, uid=i, repo_namespace="ns",
                                  repo_name=f"m{i}", block=10 + i, source_event_id=f"s{i}")
        out.append(("evaluation_status",
                    new_envelope(EvaluationStatusChanged(hash=h, status="RUNNING"), key=h,
                                 producer="t")))  # status before its request
        out.append(("evaluation_requests", new_envelope(req, key=h, producer="t",
                                                        event_id=f"r{h}")))
        out.append(("evaluation_status",
                    new_envelope(EvaluationStatusChanged(hash=h, status="PRECHECK"), key=h,
                                 producer="t")))
        if i % 2 == 0:
            score = ScoreComputed(hash=h, status="COMPLETED", total_score=0.5, evaluator="e",
                                  request_event_id=f"r{h}", samples=[
                                      SampleResult(index=0, text="x", ce=1.0, wer=0.0, score=0.75)])
            out.append(("scores", new_envelope(score, key=h, producer="t")))
    return out


def test_replay_and_rebuild_give_the_same_rows(pipeline) -> None:
    t = pipeline.kafka.topics
    for topic, env in _events(20):
        pipeline.send(getattr(t, topic), env)
    pipeline.send_raw(t.scores, b"not an event")
    # An aborted transactional write never reaches the tables (read_committed).
    producer = Producer(pipeline.kafka.producer_config(**{"transactional.id": "abort-test"}))
    producer.init_transactions(30)
    producer.begin_transaction()
    aborted = ScoreComputed(hash="1001", status="COMPLETED", total_score=0.99, evaluator="ghost",
                            request_event_id="r")
    producer.produce(t.scores, encode(new_envelope(aborted, key="1001", producer="t")), "1001")
    producer.flush(10)
    producer.abort_transaction(30)

    sink = pipeline.start("sink", ["sink", "run"])
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM dead_letters")[0][0] == 1,
                  "the dead letter")
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM scores")[0][0] == 10, "10 scores")
    sink.stop()
    first = _snapshot(pipeline)
    statuses = dict(pipeline.query("SELECT hash, status FROM submissions"))
    assert len(statuses) == 20
    assert {statuses[str(1000 + i)] for i in range(0, 20, 2)} == {"COMPLETED"}
    assert {statuses[str(1000 + i)] for i in range(1, 20, 2)} == {"RUNNING"}
    assert pipeline.query("SELECT evaluator FROM scores WHERE hash = '1001'") == []

    # Replaying everything again (a fresh group) changes nothing.
    replay_group = f"{pipeline.kafka.topic_prefix}replay"
    pipeline.start("sink", ["sink", "run"], SPEECHSTREAM_SINK_GROUP_ID=replay_group)
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM dead_letters")[0][0] == 1,
                  "the replay")
    import time

    time.sleep(3)
    pipeline.stop()
    assert _snapshot(pipeline) == first

    # Empty tables + replay from the start rebuild the same rows.
    done = pipeline.cli("sink", "rebuild")
    assert done.returncode == 0, done.stderr
    assert _snapshot(pipeline) == first


def _write(conninfo: str, batches: list[list]) -> list[tuple]:
    sink = PostgresWriter(conninfo)
    sink.start()
    try:
        for batch in batches:
            sink.write_batch(batch)
    finally:
        sink.close()
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT hotkey, uid, block, event_id FROM miners ORDER BY 1")
        found = rows.fetchall()
        conn.execute("TRUNCATE miners")
    return found


def test_the_latest_registration_wins_whatever_the_order_and_batching(db_conninfo) -> None:
    # Two registrations of one hotkey at the same block: the higher event id is the latest,
    # within a batch and across batches alike.
    events = [
        new_envelope(MinerRegistered(hotkey=HK, uid=uid, block=block, signature="cd" * 64),
                     key=HK, producer="t", event_id=event_id)
        for uid, block, event_id in ((1, 5, "e-a"), (2, 5, "e-c"), (3, 5, "e-b"), (4, 2, "e-z"))
    ]
    one_batch = _write(db_conninfo, [events])
    assert one_batch == [(HK, 2, 5, "e-c")]
    assert _write(db_conninfo, [[e] for e in events]) == one_batch
    assert _write(db_conninfo, [[e] for e in reversed(events)]) == one_batch
    assert _write(db_conninfo, [events[2:], events[:2]]) == one_batch


def test_the_sink_refuses_a_database_that_does_not_match_its_tables(db_conninfo) -> None:
    with psycopg.connect(db_conninfo) as conn:
        conn.execute("DROP VIEW submission_standing")  # it holds the column's type
        conn.execute("ALTER TABLE submissions ALTER COLUMN uid TYPE bigint")
        conn.execute("ALTER TABLE rejections DROP COLUMN message")
    sink = PostgresWriter(db_conninfo)
    with pytest.raises(SinkError) as info:
        sink.start()
    sink.close()
    message = str(info.value)
    assert "submissions.uid is not integer" in message
    assert "rejections.message is missing" in message


def test_the_leaderboard_orders_by_status_then_score(db_conninfo) -> None:
    def request(h: str):
        return new_envelope(EvaluationRequested(
            hash=h, hotkey="ab" * 32, uid=int(h), repo_namespace="ns", repo_name=f"m{h}",
            block=10, source_event_id=f"s{h}"),
            key=h, producer="t", event_id=f"r{h}")

    def status(h: str, s: str):
        return new_envelope(EvaluationStatusChanged(hash=h, status=s), key=h, producer="t")

    def score(h: str, total: float | None):
        done = ScoreComputed(hash=h, status="COMPLETED" if total is not None else "FAILED",
                             total_score=total, reason=None if total is not None else "no",
                             evaluator="e", request_event_id=f"r{h}")
        return new_envelope(done, key=h, producer="t")

    rejected = SubmissionRejected(code=RejectionCode.HASH_MISMATCH, message="m",
                                  source_event_id="s", source_type="submission.published",
                                  hash="7")
    sink = PostgresWriter(db_conninfo)
    sink.start()
    # A submission stands once its request is read (the ledger's rule): statuses and scores
    # of a hash never requested are no submission.
    sink.write_batch([*(request(h) for h in "123456"),
                      status("1", "QUEUED"), status("2", "RUNNING"), score("3", None),
                      score("4", 0.2), status("5", "PRECHECK"), score("6", 0.9),
                      new_envelope(rejected, key=None, producer="t")])
    sink.close()
    with psycopg.connect(db_conninfo) as conn:
        board = leaderboard(conn)
    assert [(r.hash, r.status) for r in board] == [
        ("6", "COMPLETED"), ("4", "COMPLETED"), ("2", "RUNNING"), ("5", "PRECHECK"),
        ("1", "QUEUED"), ("3", "FAILED"), ("7", "REJECTED"),
    ]
    with psycopg.connect(db_conninfo) as conn:
        # Statuses: RUNNING and PRECHECK, and each request's QUEUED (the QUEUED status event
        # of "1" says nothing its request does not: dropped).
        assert counts(conn) == {"miners": 0, "submissions": 6, "status_events": 2 + 6,
                                "scores": 3, "sample_results": 0, "sample_audio": 0,
                                "audits": 0,
                                "rejections": 1, "dead_letters": 0, "weights": 0,
                                "weight_entries": 0, "minerboard": 0,
                                "scoring_activations": 0, "withdrawals": 0,
                                "evaluation_requests": 6}


def test_a_rescore_lives_beside_the_score_and_never_moves_the_submission_row(db_conninfo) -> None:
    # One batch, as a replay reads it: the request and its v2 score, and a re-score for v1
    # (its statuses and score), the re-score's first.
    h = "4242"
    req = EvaluationRequested(hash=h, hotkey=HK, uid=1, repo_namespace="ns", repo_name="m",
                              block=10, scoring_version="v2", source_event_id="s")

    def status(s: str, version: str, rescore_of: str | None):
        return new_envelope(EvaluationStatusChanged(hash=h, status=s, scoring_version=version,
                                                    rescore_of=rescore_of),
                            key=h, producer="t")

    def score(version: str, total: float, rescore_of: str | None):
        return new_envelope(ScoreComputed(hash=h, scoring_version=version, status="COMPLETED",
                                          total_score=total, evaluator="e",
                                          request_event_id="rescore" if rescore_of else "req",
                                          rescore_of=rescore_of),
                            key=h, producer="t")

    batch = [status("RUNNING", "v1", "req"), score("v1", 0.9, "req"),
             new_envelope(req, key=h, producer="t", event_id="req"),
             status("RUNNING", "v2", None)]
    sink = PostgresWriter(db_conninfo)
    sink.start()
    sink.write_batch(batch)
    with psycopg.connect(db_conninfo) as conn:
        row = conn.execute("SELECT scoring_version, status, score FROM submissions").fetchall()
    assert row == [("v2", "RUNNING", None)]
    sink.write_batch([score("v2", 0.4, None)])
    sink.close()
    with psycopg.connect(db_conninfo) as conn:
        assert conn.execute("SELECT scoring_version, status, score FROM submissions"
                            ).fetchall() == [("v2", "COMPLETED", 0.4)]
        assert conn.execute("SELECT scoring_version, total_score, rescore_of FROM scores "
                            "ORDER BY 1").fetchall() == [("v1", 0.9, "req"), ("v2", 0.4, None)]
        # What counts follows the active version: the row's own until one is activated.
        assert conn.execute("SELECT scoring_version, status, score FROM submission_standing"
                            ).fetchall() == [("v2", "COMPLETED", 0.4)]
        conn.execute("INSERT INTO scoring_activations (event_id, scoring_version, activated_at)"
                     " VALUES ('a', 'v1', now())")
        assert conn.execute("SELECT scoring_version, status, score FROM submission_standing"
                            ).fetchall() == [("v1", "COMPLETED", 0.9)]
        conn.execute("INSERT INTO scoring_activations (event_id, scoring_version, activated_at)"
                     " VALUES ('b', 'v3', now() + interval '1 s')")
        ((version, status_, score_, notes),) = conn.execute(
            "SELECT scoring_version, status, score, notes FROM submission_standing").fetchall()
        assert (version, status_, score_) == ("v3", "QUEUED", None)
        assert notes == "awaiting its v3 score (v2: COMPLETED 0.4000)"


def test_a_later_score_of_the_same_version_fills_in_no_sample(db_conninfo) -> None:
    # The first score of (hash, v2) failed before its samples; a second one (another evaluator,
    # a later batch) has three. scores keeps the first; its samples stay the first's: none.
    req = EvaluationRequested(hash="77", hotkey=HK, uid=1, repo_namespace="ns", repo_name="m",
                              block=10, scoring_version="v2", source_event_id="s")
    first = ScoreComputed(hash="77", status="FAILED", reason="TIME_LIMIT: slow", evaluator="a",
                          request_event_id="r77")
    second = ScoreComputed(hash="77", status="COMPLETED", total_score=0.5, evaluator="b",
                           request_event_id="r77", samples=[
                               SampleResult(index=i, text=f"t{i}", ce=1.0) for i in range(3)])
    sink = PostgresWriter(db_conninfo)
    sink.start()
    sink.write_batch([new_envelope(req, key="77", producer="t", event_id="r77"),
                      new_envelope(first, key="77", producer="t", event_id="score-a")])
    sink.write_batch([new_envelope(second, key="77", producer="t", event_id="score-b")])
    sink.close()
    with psycopg.connect(db_conninfo) as conn:
        assert conn.execute("SELECT event_id FROM scores").fetchall() == [("score-a",)]
        kept = conn.execute(
            "SELECT count(*) FROM sample_results r JOIN scores s ON s.event_id = "
            "r.score_event_id").fetchone()[0]
        assert kept == 0
