"""No record stops the sink: one the database cannot hold is set aside as a dead letter with
its reason, and the rest of its batch lands (a real broker, a real database, the sink as a
child process)."""

from __future__ import annotations

import pytest

from schemas import EvaluationStatusChanged, new_envelope
from schemas.events import ScoreAudited
from tests.integration.pipeline import Pipeline

pytestmark = pytest.mark.integration


def test_a_record_postgresql_cannot_hold_is_set_aside_and_its_neighbours_land(
    pipeline: Pipeline,
) -> None:
    t = pipeline.kafka.topics
    # jsonb holds no NUL character: this audit fails its batch's transaction every time.
    poison = new_envelope(ScoreAudited(
        hash="7", scoring_version="v2", verdict="disagree", score_event_id="s",
        evaluator="e", auditor="a", scored_status="COMPLETED", tolerance=0.01,
        differences={"torch": ["2.5\u0000", "2.6"]}), key="7", producer="attacker")
    before = [new_envelope(ScoreAudited(
        hash=str(h), scoring_version="v2", verdict="agree", score_event_id="s", evaluator="e",
        auditor="a", scored_status="COMPLETED", tolerance=0.01), key="7", producer="t")
        for h in (1, 2, 3)]
    after = [new_envelope(ScoreAudited(
        hash=str(h), scoring_version="v2", verdict="agree", score_event_id="s", evaluator="e",
        auditor="a", scored_status="COMPLETED", tolerance=0.01), key="7", producer="t")
        for h in (4, 5)]
    statuses = [new_envelope(EvaluationStatusChanged(hash=str(h), status="RUNNING"),
                             key=str(h), producer="t") for h in range(10, 20)]
    pipeline.send(t.evaluation_status, *statuses[:5])
    pipeline.send(t.audits, *before, poison, *after)  # one partition: one order
    pipeline.send(t.evaluation_status, *statuses[5:])
    pipeline.start("sink", ["sink", "run"])

    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM dead_letters")[0][0] == 1,
                  "the poison record among the dead letters")
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM audits")[0][0] == 5,
                  "its neighbours written")
    assert {r[0] for r in pipeline.query("SELECT event_id FROM audits")} == {
        e.event_id for e in before + after}
    assert pipeline.query("SELECT count(*) FROM status_events")[0][0] == 10
    ((topic, error, consumer),) = pipeline.query(
        "SELECT topic, error, consumer FROM dead_letters")
    assert topic == t.audits and consumer == "speechstream-sink"
    assert error.startswith("the sink cannot store it: ") and "\\u0000" in error
    # And it keeps going: what comes next lands too.
    pipeline.send(t.evaluation_status, new_envelope(
        EvaluationStatusChanged(hash="99", status="RUNNING"), key="99", producer="t"))
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM status_events")[0][0] == 11,
                  "a later record")
    pipeline.check()
