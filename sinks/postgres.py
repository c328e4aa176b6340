"""The PostgreSQL batch writer: binary COPY into TEMP staging tables, one merge per table.

Every merge commutes, so replaying a topic, or replaying every topic into empty tables, in
any interleaving of partitions and batches, yields the same rows:
- miners: upsert by hotkey, the highest (block, event id) wins; a uid is kept only by the
  hotkey of its latest registration (``miner_uid_claims``), every other row's uid is cleared;
- submissions: created by the request *or* by the first status/score seen for its hash; the
  request columns come from the lowest request event id; the status only moves up the ranks
  QUEUED < PRECHECK < RUNNING < COMPLETED | FAILED (ties: later time, then notes, then id);
  COMPLETED/FAILED mirror the latest-computed row of ``scores`` for the hash;
- scores: per (hash, scoring version) the earliest computed wins, its samples with it;
- status_events, rejections, dead_letters: insert once by event id.

The SQL lives in ``sinks.statements``; the pure batch reduction in ``sinks.merge``.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from schemas.envelope import Envelope
from sinks.base import Sink
from sinks.exceptions import SinkError
from sinks.merge import TABLES, StagedBatch, reduce_batch
from sinks.statements import MERGES, ORDER, STAGING


def _stage(name: str) -> sql.Identifier:
    return sql.Identifier(f"stage_{name}")


_TYPES = """
    SELECT t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attnum"""


def create_staging(conn: psycopg.Connection) -> dict[str, list[str]]:
    """Create the session's TEMP staging tables (emptied at every commit); their column types."""
    types: dict[str, list[str]] = {}
    with conn.transaction():
        for name, (target, columns) in STAGING.items():
            conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS"
                    " AS SELECT {} FROM {} WITH NO DATA"
                ).format(
                    _stage(name), sql.SQL(", ").join(map(sql.Identifier, columns)),
                    sql.Identifier(target),
                )
            )
            rows = conn.execute(_TYPES, (f"pg_temp.stage_{name}",)).fetchall()
            types[name] = [r[0] for r in rows]
    return types


def write_staged(
    conn: psycopg.Connection, staged: StagedBatch, types: dict[str, list[str]]
) -> dict[str, int]:
    """Binary-COPY ``staged`` into the staging tables and merge them, in one transaction."""
    with conn.transaction(), conn.cursor() as cur:
        for name in ORDER:
            if staged[name]:
                _copy(cur, name, staged[name], types[name])
        for name in ORDER:
            # Samples are merged whenever scores are: a winning score replaces its samples.
            if staged[name] or (name == "sample_results" and staged["scores"]):
                for statement in MERGES[name]:
                    cur.execute(statement)
    return {STAGING[name][0]: n for name, n in staged.counts().items()}


def _copy(cur: psycopg.Cursor, name: str, rows: list[tuple], types: list[str]) -> None:
    """Binary COPY of ``rows`` into the staging table ``name``."""
    copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        _stage(name), sql.SQL(", ").join(map(sql.Identifier, STAGING[name][1]))
    )
    with cur.copy(copy) as cp:
        cp.set_types(types)
        for row in rows:
            cp.write_row(row)


def truncate(conninfo: str) -> None:
    """Empty every table the sink writes (before a rebuild)."""
    try:
        with psycopg.connect(conninfo) as conn:
            conn.execute(sql.SQL("TRUNCATE {}").format(
                sql.SQL(", ").join(map(sql.Identifier, TABLES))))
    except psycopg.Error as exc:
        raise SinkError(f"cannot empty the sink's tables: {exc}") from exc


class PostgresSink(Sink):
    """Writes batches into PostgreSQL: one transaction a batch, COPY + one merge a table."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._conn: psycopg.Connection | None = None
        self._types: dict[str, list[str]] = {}

    def setup(self) -> None:
        try:
            self._conn = psycopg.connect(self._conninfo)
            self._types = create_staging(self._conn)
        except psycopg.Error as exc:
            self.close()
            raise SinkError(f"cannot prepare the PostgreSQL sink: {exc}") from exc

    def write_batch(self, envelopes: Sequence[Envelope]) -> dict[str, int]:
        if self._conn is None:
            raise SinkError("write_batch() before setup(): call setup() first")
        staged = reduce_batch(envelopes)
        if not staged.counts():
            return {}
        try:
            return write_staged(self._conn, staged, self._types)
        except psycopg.Error as exc:
            raise SinkError(f"batch of {len(envelopes)} events not written: {exc}") from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
