"""The ledger and PostgreSQL give one answer: random logs replayed into a
:class:`~speechstream.ledger.Ledger` and into the real sink on the real database, compared
hash by hash (``submission_standing``) and uid by uid (what the validator weighs).

Each log (``tests/integration/ledger_logs.py``) holds a few hundred records over the topics'
partitions; the ledger reads them in one random interleaving, the sink in another, in random
batches, with partitions read again from earlier offsets now and then (a restart before a
commit). ``LEDGER_LOGS`` sets how many logs (200 by default).
"""

from __future__ import annotations

import os
import random

import psycopg
import pytest

from consumers.validator import candidates
from sinks.postgres import PostgresWriter
from sinks.queries import uid_submissions
from sinks.tables import TABLES
from speechstream.ledger import Ledger
from tests.integration.ledger_logs import random_log

pytestmark = pytest.mark.integration

LOGS = int(os.environ.get("LEDGER_LOGS", "200"))
COLUMNS = ("hash", "uid", "hotkey", "repo_namespace", "repo_name", "block", "scoring_version",
           "status", "score", "notes", "content_hash", "request_event_id", "withdrawn")


def _standings_in_db(conn: psycopg.Connection) -> dict[str, tuple]:
    rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM submission_standing").fetchall()
    return {row[0]: tuple(row) for row in rows}


def _reset(conn: psycopg.Connection) -> None:
    conn.execute("TRUNCATE " + ", ".join(t.name for t in TABLES))


def test_the_sink_and_the_validator_give_the_ledgers_answers(db_conninfo: str) -> None:
    sink = PostgresWriter(db_conninfo)
    sink.start()
    disagreements: list[str] = []
    hashes = uids = 0
    try:
        with psycopg.connect(db_conninfo, autocommit=True) as conn:
            for seed in range(LOGS):
                _reset(conn)
                log = random_log(seed, size=random.Random(seed).randint(100, 300))
                rng = random.Random(seed * 7919 + 1)
                ledger = Ledger(default_version=rng.choice(("v1", "v2")))
                for env, _ in log.interleaved(rng):
                    ledger.apply(env)
                for batch in log.delivered(rng):
                    sink.write_batch([env for env, _ in batch], [off for _, off in batch])

                expected = {h: tuple(getattr(s, c) for c in COLUMNS)
                            for h, s in ledger.standings().items()}
                found = _standings_in_db(conn)
                if found != expected:
                    wrong = sorted(h for h in expected.keys() | found.keys()
                                   if expected.get(h) != found.get(h))
                    disagreements.append(f"log {seed}: hash {wrong[0]}: ledger "
                                         f"{expected.get(wrong[0])} != view {found.get(wrong[0])}")
                    continue
                hashes += len(expected)
                weighed = [(c.uid, c.hotkey, c.hash, c.repo, c.block, c.status, c.score,
                            c.content_hash, c.withdrawn) for c in candidates(ledger)]
                in_db = [(u.uid, u.hotkey, u.hash, u.repo, u.block, u.status, u.score,
                          u.content_hash, u.withdrawn) for u in uid_submissions(conn)]
                if weighed != in_db:
                    disagreements.append(f"log {seed}: validator {weighed} != db {in_db}")
                uids += len(weighed)
    finally:
        sink.close()
    assert not disagreements, f"{len(disagreements)} of {LOGS} logs disagree:\n" + "\n".join(
        disagreements[:5])
    assert hashes > LOGS * 5 and uids > LOGS  # the logs were not trivial
