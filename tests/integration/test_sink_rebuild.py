"""`speechstream sink rebuild` on a real broker and database: a fresh schema swapped in while
the live sink writes, `--verify`, and a rebuild that fails half-way."""

from __future__ import annotations

import json
import threading

import psycopg
import pytest

from schemas import (
    EvaluationRequested,
    EvaluationStatusChanged,
    MinerRegistered,
    SampleResult,
    ScoreComputed,
    new_envelope,
)
from schemas.envelope import Envelope
from schemas.events import ScoreAudited
from sinks.compare import checksum_query
from sinks.exceptions import RebuildInterrupted
from sinks.postgres import PostgresWriter
from sinks.rebuild import Rebuild
from sinks.settings import SinkSettings
from sinks.tables import TABLES

pytestmark = pytest.mark.integration

HK = "ab" * 32


def _submission(n: int) -> list[tuple[str, Envelope]]:
    """Events of one submission: its request, PRECHECK, RUNNING and (even ``n``) its score."""
    h = str(n)
    req = EvaluationRequested(hash=h, hotkey=HK, uid=n % 200, repo_namespace="ns",
                              repo_name=f"m{n}", block=n, source_event_id=f"s{n}")
    out = [("evaluation_requests", new_envelope(req, key=h, producer="t", event_id=f"r{h}"))]
    out += [("evaluation_status", new_envelope(EvaluationStatusChanged(hash=h, status=s), key=h,
                                               producer="t")) for s in ("PRECHECK", "RUNNING")]
    if n % 2 == 0:
        score = ScoreComputed(hash=h, status="COMPLETED", total_score=(n % 997) / 1000,
                              evaluator="e", request_event_id=f"r{h}", samples=[
                                  SampleResult(index=0, text="x", ce=1.0, wer=0.0, score=0.5)])
        out.append(("scores", new_envelope(score, key=h, producer="t")))
    miner = MinerRegistered(hotkey=f"{n % 50:064x}", uid=n % 50, block=n, signature="cd" * 64)
    out.append(("miners", new_envelope(miner, key=miner.hotkey, producer="t")))
    return out


def _publish(pipe, numbers: range) -> None:
    by_topic: dict[str, list[Envelope]] = {}
    for n in numbers:
        for topic, env in _submission(n):
            by_topic.setdefault(topic, []).append(env)
    for topic, envs in by_topic.items():
        pipe.send(getattr(pipe.kafka.topics, topic), *envs)


def _submissions(pipe) -> int:
    return pipe.query("SELECT count(*) FROM submissions")[0][0]


def _rebuild_schemas(pipe) -> list[str]:
    return [r[0] for r in pipe.query(
        "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, 'rebuild')")]


def _public_oid(pipe) -> int:
    return pipe.query("SELECT 'public'::regnamespace::oid")[0][0]


def _state(conninfo: str) -> dict[str, tuple]:
    """Row count and checksum of every live table."""
    with psycopg.connect(conninfo) as conn:
        return {t.name: conn.execute(checksum_query(t, "public")).fetchone() for t in TABLES}


def test_a_rebuild_swaps_in_while_the_live_sink_writes(pipeline) -> None:
    _publish(pipeline, range(1000, 1300))
    pipeline.start("sink", ["sink", "run"])
    pipeline.wait(lambda: _submissions(pipeline) == 300, "300 submissions")
    before = _public_oid(pipeline)

    # New submissions keep arriving while the rebuild runs, the swap included.
    stop, sent = threading.Event(), [1300]

    def feed() -> None:
        while not stop.wait(0.1):
            _publish(pipeline, range(sent[0], sent[0] + 5))
            sent[0] += 5

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        done = pipeline.cli("sink", "rebuild")
    finally:
        stop.set()
        feeder.join()
    assert done.returncode == 0, done.stderr
    print(done.stderr, done.stdout)
    assert "swapped in as public (old schema dropped)" in done.stdout
    assert _rebuild_schemas(pipeline) == []
    assert _public_oid(pipeline) != before  # the live schema is the rebuilt one now
    assert sent[0] > 1300

    # Events published after the swap land in the new live tables: the live sink, which kept
    # running, writes there (its prepared merges were planned again after the drop).
    _publish(pipeline, range(5000, 5020))
    total = sent[0] - 1000 + 20
    pipeline.wait(lambda: _submissions(pipeline) == total, f"{total} submissions")
    pipeline.check()
    assert pipeline.query("SELECT count(*) FROM submissions WHERE hash::bigint >= 5000"
                          ) == [(20,)]
    assert pipeline.query("SELECT count(*) FROM scores WHERE hash::bigint >= 5000") == [(10,)]

    # Quiet now: the swapped-in tables equal a fresh replay.
    verify = pipeline.cli("sink", "rebuild", "--verify")
    print(verify.stdout)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"all {len(TABLES)} tables equal" in verify.stdout
    assert _rebuild_schemas(pipeline) == []


def test_verify_names_a_table_that_differs(pipeline) -> None:
    _publish(pipeline, range(2000, 2020))
    pipeline.start("sink", ["sink", "run"])
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM scores")[0][0] == 10,
                  "10 scores")
    with psycopg.connect(pipeline.conninfo) as conn:
        conn.execute("UPDATE scores SET total_score = 0.999 WHERE hash = '2004'")
        conn.execute("DELETE FROM miners WHERE uid = 3")

    found = pipeline.cli("sink", "rebuild", "--verify")
    print(found.stdout)
    assert found.returncode == 1, found.stdout + found.stderr
    lines = {line.split()[0]: line.split() for line in found.stdout.splitlines()[1:]
             if line and not line.startswith("rebuilt")}
    assert lines["scores"] == ["scores", "10", "10", "DIFFERS"]
    assert lines["miners"] == ["miners", "19", "20", "DIFFERS"]
    assert {t for t, line in lines.items() if line[-1] == "equal"} == {
        t.name for t in TABLES} - {"scores", "miners"}
    assert f"2 of {len(TABLES)} tables differ: miners, scores" in found.stdout

    as_json = pipeline.cli("sink", "rebuild", "--verify", "--json")
    assert as_json.returncode == 1, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["equal"] is False
    assert {t["table"] for t in report["tables"] if not t["equal"]} == {"scores", "miners"}
    assert _rebuild_schemas(pipeline) == []


def test_a_rebuild_that_fails_half_way_leaves_the_live_tables_as_they_were(pipeline) -> None:
    _publish(pipeline, range(3000, 3100))
    sink = PostgresWriter(pipeline.conninfo)
    sink.start()
    sink.write_batch([env for n in range(3000, 3100) for _, env in _submission(n)])
    sink.close()
    before = _state(pipeline.conninfo)

    # Stopped (Ctrl-C) after its first batch: its schema is dropped, nothing live changed.
    stop = threading.Event()
    job = Rebuild(pipeline.conninfo, pipeline.kafka,
                  SinkSettings(group_id=f"{pipeline.kafka.topic_prefix}sink", batch_size=20,
                               batch_timeout_s=0.1),
                  stop=stop, on_written=lambda _: stop.set())
    with pytest.raises(RebuildInterrupted):
        job.swap()
    assert _rebuild_schemas(pipeline) == []
    assert _state(pipeline.conninfo) == before

    # A record the database refuses (jsonb holds no NUL) no longer fails the replay: the
    # rebuild sets it aside as a dead letter, with the reason, and swaps.
    poison = ScoreAudited(hash="7", scoring_version="v2", verdict="disagree",
                          score_event_id="s", evaluator="e", auditor="a",
                          scored_status="COMPLETED", tolerance=0.01,
                          differences={"torch": ["2.5\u0000", "2.6"]})
    pipeline.send(pipeline.kafka.topics.audits, new_envelope(poison, key="7", producer="t"))
    done = pipeline.cli("sink", "rebuild", SPEECHSTREAM_SINK_BATCH_SIZE="50")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _rebuild_schemas(pipeline) == []
    assert pipeline.query("SELECT count(*) FROM audits WHERE hash = '7'")[0][0] == 0
    letters = "SELECT error FROM dead_letters WHERE topic = %s"
    audits = (pipeline.kafka.topics.audits,)
    pipeline.wait(lambda: len(pipeline.query(letters, audits)) == 1, "the poison set aside")
    assert pipeline.query(letters, audits)[0][0].startswith("the sink cannot store it: ")
