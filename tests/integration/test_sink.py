"""The sink on a real broker and database: idempotent replays, rebuilds, read_committed."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from schemas import (
    EvaluationRequested,
    EvaluationStatusChanged,
    SampleResult,
    ScoreComputed,
    new_envelope,
)
from schemas.codec import encode

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
        out.append(("evaluation_requests", new_envelope(req, key=h, producer="t")))
        out.append(("evaluation_status",
                    new_envelope(EvaluationStatusChanged(hash=h, status="QUEUED"), key=h,
                                 producer="t")))
        if i % 2 == 0:
            score = ScoreComputed(hash=h, status="COMPLETED", total_score=0.5, evaluator="e",
                                  request_event_id="r", samples=[
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
