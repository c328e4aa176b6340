"""The PostgreSQL sink against the real broker and database: rows, replays, rebuilds, DLQ."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer
from psycopg import sql
from pydantic import SecretStr

from producers.producer import EventProducer
from schemas.codec import encode
from schemas.envelope import Envelope
from sinks.merge import TABLES
from sinks.postgres import truncate
from sinks.queries import counts, leaderboard
from sinks.runner import run_sink
from speechstream.settings import DatabaseSettings, KafkaSettings, SinkSettings
from tests.unit.sinks.events import hash_of, history, hotkey, requested, scored, status

pytestmark = pytest.mark.integration

WRITE_TIME = {"written_at", "created_at", "updated_at"}


def _topic(kafka: KafkaSettings, env: Envelope) -> str:
    t = kafka.topics
    return {
        "miner.registered": t.miners, "evaluation.requested": t.evaluation_requests,
        "evaluation.status": t.evaluation_status, "score.computed": t.scores,
        "submission.rejected": t.rejected, "deadletter": t.deadletter,
    }[env.type]


def _produce(kafka: KafkaSettings, envelopes: Iterable[Envelope]) -> None:
    with EventProducer(kafka) as producer:
        for env in envelopes:
            producer.send(_topic(kafka, env), env)
        producer.flush()


def _settings(group: str) -> SinkSettings:
    return SinkSettings(group_id=group, batch_size=7, batch_timeout_s=0.1)


def _database(conninfo: str) -> DatabaseSettings:
    return DatabaseSettings().model_copy(update={"url": SecretStr(conninfo)})


def _catch_up(kafka: KafkaSettings, conninfo: str, group: str) -> int:
    """Run the sink from ``group``'s offsets until every partition is drained."""
    return run_sink(kafka, _database(conninfo), _settings(group), stop=threading.Event(),
                    until_caught_up=True)


def _run_until(
    kafka: KafkaSettings, conninfo: str, group: str, done: Callable[[dict[str, int]], bool],
    timeout_s: float = 30.0,
) -> dict[str, int]:
    """Run the sink in a thread until ``done(counts)``; stop it and return the counts."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_sink(kafka, _database(conninfo), _settings(group), stop=stop)
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            while time.monotonic() < deadline and not errors:
                now = counts(conn)
                if done(now):
                    return now
                time.sleep(0.2)
        pytest.fail(f"sink did not get there in {timeout_s}s: {errors or now}")
    finally:
        stop.set()
        thread.join(30)


def _snapshot(conninfo: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every sink table, write-time columns left out, in a fixed order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(conninfo) as conn:
        for table in TABLES:
            columns = [
                r[0] for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = %s ORDER BY ordinal_position", (table,)
                ).fetchall() if r[0] not in WRITE_TIME
            ]
            query = sql.SQL("SELECT {} FROM {} ORDER BY 1, 2, 3").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
            )
            out[table] = conn.execute(query).fetchall()
    return out


def test_events_become_rows(kafka_settings: KafkaSettings, db_conninfo: str,
                            group_id: str) -> None:
    _produce(kafka_settings, history())
    assert _catch_up(kafka_settings, db_conninfo, group_id) == len(history())
    with psycopg.connect(db_conninfo) as conn:
        assert counts(conn) == {
            "miners": 4, "submissions": 3, "status_events": 6, "scores": 2,
            "sample_results": 2, "rejections": 1, "dead_letters": 1,
        }
        miners = dict(conn.execute("SELECT hotkey, uid FROM miners").fetchall())
        assert miners == {hotkey(1): 1, hotkey(2): None, hotkey(3): 3, hotkey(4): 2}
        subs = {r[0]: r[1:] for r in conn.execute(
            "SELECT hash, status, status_rank, score, notes, repo_name FROM submissions")}
        assert subs[hash_of(1)] == ("COMPLETED", 3, 0.75, None, "model-1")
        assert subs[hash_of(2)] == ("FAILED", 3, None, "precheck failed", "model-2")
        assert subs[hash_of(3)][:2] == ("PRECHECK", 1)
        raw = conn.execute("SELECT raw FROM dead_letters").fetchone()
        assert raw is not None and bytes(raw[0]) == b"not json"
        board = leaderboard(conn)
    assert [r.status for r in board] == ["COMPLETED", "PRECHECK", "FAILED", "REJECTED"]
    assert board[-1].notes == "RATE_LIMITED: too soon"


def test_replay_and_rebuild_give_identical_rows(
    kafka_settings: KafkaSettings, db_conninfo: str, group_id: str
) -> None:
    events = history() + [status(3, "RUNNING", 30), scored(3, 0.5, 40, samples=3)]
    _produce(kafka_settings, events)
    _catch_up(kafka_settings, db_conninfo, group_id)
    first = _snapshot(db_conninfo)
    assert first["submissions"] and first["sample_results"]
    _catch_up(kafka_settings, db_conninfo, f"{group_id}-replay")
    assert _snapshot(db_conninfo) == first
    truncate(db_conninfo)
    assert all(not rows for rows in _snapshot(db_conninfo).values())
    _catch_up(kafka_settings, db_conninfo, f"{group_id}-rebuild")
    assert _snapshot(db_conninfo) == first


def test_status_before_request_ends_right(
    kafka_settings: KafkaSettings, db_conninfo: str, group_id: str
) -> None:
    _produce(kafka_settings, [status(7, "RUNNING", 5), status(7, "QUEUED", 1)])
    _catch_up(kafka_settings, db_conninfo, group_id)
    with psycopg.connect(db_conninfo) as conn:
        row = conn.execute("SELECT status, repo_name FROM submissions").fetchone()
        assert row == ("RUNNING", None)
    _produce(kafka_settings, [requested(7), scored(7, 0.25, 9)])
    _catch_up(kafka_settings, db_conninfo, group_id)
    with psycopg.connect(db_conninfo) as conn:
        row = conn.execute(
            "SELECT status, score, repo_name, hotkey, request_event_id FROM submissions"
        ).fetchone()
    assert row == ("COMPLETED", 0.25, "model-7", hotkey(7), "req-7")


def test_aborted_transaction_never_reaches_the_tables(
    kafka_settings: KafkaSettings, db_conninfo: str, group_id: str
) -> None:
    producer = Producer(kafka_settings.producer_config(**{"transactional.id": group_id}))
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(kafka_settings.topics.scores, encode(scored(8, 0.9, 3)), key=hash_of(8))
    producer.flush(30)
    producer.abort_transaction(30)
    _produce(kafka_settings, [requested(8)])
    _catch_up(kafka_settings, db_conninfo, group_id)
    with psycopg.connect(db_conninfo) as conn:
        assert counts(conn)["scores"] == 0
        assert conn.execute("SELECT status FROM submissions").fetchall() == [("QUEUED",)]


def test_undecodable_record_goes_to_the_dead_letter_topic(
    kafka_settings: KafkaSettings, db_conninfo: str, group_id: str
) -> None:
    topic = kafka_settings.topics.evaluation_requests
    with EventProducer(kafka_settings) as producer:
        producer.send_raw(topic, b"\xffnot json", key=hash_of(9))
        producer.send(topic, requested(9))
        producer.flush()
    _run_until(kafka_settings, db_conninfo, group_id,
               lambda c: c["dead_letters"] == 1 and c["submissions"] == 1)
    with psycopg.connect(db_conninfo) as conn:
        row = conn.execute(
            'SELECT topic, raw, error, consumer FROM dead_letters').fetchone()
        assert row is not None
        assert (row[0], bytes(row[1]), row[3]) == (topic, b"\xffnot json", "speechstream-sink")
        assert row[2].startswith("not JSON")
        assert conn.execute("SELECT hash FROM submissions").fetchall() == [(hash_of(9),)]
