"""Nothing a writer chose orders what the readers show (real broker, sink and PostgreSQL, and the
ledger read from the same log): an activation dated 2099 is undone by the next one, an
activation of a version no engine computes is a dead letter, a score that answers no request
shows nowhere, and the latest weights vector is the latest in the log."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.store import PostgresStore
from producers.rescore import read_ledger
from schemas.codec import encode
from schemas.envelope import Envelope, new_envelope
from schemas.events import (
    EvaluationRequested,
    ScoreComputed,
    ScoringActivated,
    WeightEntry,
    WeightsComputed,
)
from speechstream.kafka.reader import ledger_topics

pytestmark = pytest.mark.integration

FAR_FUTURE = datetime(2099, 1, 1, tzinfo=UTC)


def _dated(env: Envelope, when: datetime) -> Envelope:
    """The envelope with the time its writer chose."""
    return env.model_copy(update={"time": when})


def _request(h: str, uid: int) -> Envelope:
    return new_envelope(EvaluationRequested(
        hash=h, hotkey=f"{uid:064x}", uid=uid, repo_namespace="ns", repo_name=f"m{h}", block=10,
        scoring_version="v2", source_event_id=f"s{h}"), key=h, producer="t", event_id=f"r{h}")


def _score(h: str, version: str, total: float, answers: str) -> Envelope:
    return new_envelope(ScoreComputed(hash=h, scoring_version=version, status="COMPLETED",
                                      total_score=total, evaluator="e",
                                      request_event_id=answers), key=h, producer="t")


def _vector(epoch: int, weight: float) -> Envelope:
    entry = WeightEntry(uid=0, weight=weight, status="COMPLETED")
    return new_envelope(WeightsComputed.of("val", epoch, epoch * 100, [entry]), key="val",
                        producer="t")


def _standing(pipe) -> list[tuple]:
    return pipe.query("SELECT hash, scoring_version, status, score FROM submission_standing "
                      "ORDER BY hash")


def test_the_log_orders_what_the_writer_dated(pipeline) -> None:
    t = pipeline.kafka.topics
    pipeline.send(t.evaluation_requests, _request("1", 0), _request("2", 1))
    pipeline.send(t.scores,
                  _score("1", "v1", 0.3, "r1"), _score("1", "v2", 0.8, "r1"),
                  # hash 2's first v2 score names hash 1's request; the real one comes late
                  _score("2", "v2", 0.99, "r1"), _score("2", "v2", 0.4, "r2"),
                  _score("3", "v2", 0.7, "r3"))  # hash 3 was never requested
    pipeline.send(t.scoring_active,
                  _dated(new_envelope(ScoringActivated(scoring_version="v1"), key="active",
                                      producer="t"), FAR_FUTURE),
                  new_envelope(ScoringActivated(scoring_version="v2"), key="active",
                               producer="t"))
    forged = encode(new_envelope(ScoringActivated(scoring_version="v1"), key="active",
                                 producer="t")).replace(b'"v1"', b'"v9"')
    pipeline.send_raw(t.scoring_active, forged, key="active")
    pipeline.send(t.weights, _dated(_vector(7, 1.0), FAR_FUTURE), _vector(6, 0.5))

    pipeline.start("sink", ["sink", "run"])
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM weights")[0][0] == 2
                  and pipeline.query("SELECT count(*) FROM dead_letters")[0][0] == 1,
                  "the vectors and the dead letter")
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM scoring_activations")[0][0] == 2,
                  "both activations")

    # The activation dated 2099 came first in the log: the v2 one after it holds.
    expected = [("1", "v2", "COMPLETED", 0.8), ("2", "v2", "QUEUED", None)]
    assert _standing(pipeline) == expected
    (error,), = pipeline.query("SELECT error FROM dead_letters")
    assert "scoring_version" in error and "'v1' or 'v2'" in error

    # The ledger, read from the same log, says the same.
    ledger = read_ledger(pipeline.kafka, ledger_topics(pipeline.kafka), name="writer-order")
    assert ledger.active_version == "v2"
    shown = [(h, s.scoring_version, s.status, s.score)
             for h, s in sorted(ledger.standings().items())]
    assert shown == expected

    # The vector dated 2099 (epoch 7) came first: the API serves the later one, epoch 6.
    store = PostgresStore(pipeline.conninfo)
    store.start()
    try:
        latest = store.latest_weights(None)
    finally:
        store.close()
    assert latest is not None and latest.epoch == 6
