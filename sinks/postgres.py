"""The PostgreSQL batch writer: COPY into staging tables, then one set-based merge per feed.

What is written where, and how a replay changes nothing, is described once in
``sinks.tables``; the SQL is derived from it in ``sinks.statements``. Shortcuts, none of
which changes the rows written:
- COPY is binary, typed after the staging tables, whose integer columns are bigint so that an
  out-of-range value fails in the merge's cast as with text COPY (binary int4 would wrap). A
  batch holding a timestamp without a time zone takes text COPY (the session time zone reads
  it, as it always did).
- a ``direct`` feed is COPYed straight into its table inside a savepoint when the merge would
  insert every row as it is (no key twice in the batch, no out-of-range integer); a unique
  violation rolls back to the savepoint and the batch takes the staging table and the merge,
  and the next few batches of that feed go straight to the merge (a replay conflicts on all).
- statuses are reduced in Python to the highest rank per hash (``sinks.rows``).
- a merge skips its ``DISTINCT ON`` sort when the batch names each key once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.postgres import types as pg_types

from schemas.envelope import Envelope
from sinks import statements
from sinks.base import Prepared, SinkWriter
from sinks.exceptions import SinkError
from sinks.rows import rows_of
from sinks.tables import FEEDS, TABLES, Feed, Row

# After a unique violation, that many batches of the feed go straight to the merge (a replay
# conflicts on every batch) before COPY straight into the target is tried again.
DIRECT_BACKOFF = 16


def check_schema(conn: psycopg.Connection) -> None:
    """Raise :class:`SinkError` unless every described column exists with its declared type."""
    problems = []
    for table in TABLES:
        found = {
            name: typ for name, typ in conn.execute(
                "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = to_regclass(%s)"
                " AND attnum > 0 AND NOT attisdropped", (table.name,),
            )
        }
        if not found:
            problems.append(f"table {table.name} is missing")
            continue
        for col in table.columns:
            info = pg_types.get(col.type)
            if col.name not in found:
                problems.append(f"{table.name}.{col.name} is missing")
            elif info is None or found[col.name] != info.oid:
                problems.append(f"{table.name}.{col.name} is not {col.type}")
    if problems:
        raise SinkError(
            "the database does not match the sink's table descriptions (sinks/tables.py): "
            + "; ".join(problems) + " — apply the migrations (`speechstream dev up` or "
            "`speechstream sink run`), or fix the description"
        )


AUDIO_HASH = next(f for f in FEEDS if f.name == "sample_audio").position("hash")
PURGE_AUDIO = """
WITH uids AS (
    SELECT DISTINCT uid FROM submissions WHERE hash = ANY(%(hashes)s) AND uid IS NOT NULL
), ranked AS (
    SELECT s.hash, row_number() OVER (PARTITION BY s.uid ORDER BY s.block DESC, s.hash DESC) AS n
      FROM submissions s JOIN uids USING (uid)
     WHERE EXISTS (SELECT 1 FROM sample_audio a WHERE a.hash = s.hash)
), gone AS (
    SELECT hash FROM ranked
     WHERE n > %(keep)s AND hash NOT IN (SELECT hash FROM minerboard WHERE hash IS NOT NULL)
)
UPDATE sample_audio a SET opus = NULL, mp3 = NULL, purged_at = clock_timestamp()
  FROM gone WHERE a.hash = gone.hash AND a.purged_at IS NULL
"""
"""The clips of a batch's uids' submissions past the ``keep`` newest (by block) that have
clips, unless the minerboard shows them, lose their encodings (the row stays, ``purged_at``
set: the pages say the audio is no longer kept)."""


class PostgresWriter(SinkWriter):
    """Writes batches into PostgreSQL: one transaction a batch, COPY + one merge a feed."""

    def __init__(self, conninfo: str, *, audio_keep_per_uid: int | None = None) -> None:
        """``audio_keep_per_uid``: after a batch with clips, the clips of each of its uids'
        submissions past the newest ones kept are purged (:data:`PURGE_AUDIO`); None keeps
        every clip."""
        self._conninfo = conninfo
        self._audio_keep = audio_keep_per_uid
        self._conn: psycopg.Connection | None = None
        self._sql: dict[tuple[str, Any], list[bytes]] = {}
        self._direct_skip: dict[str, int] = {feed.name: 0 for feed in FEEDS if feed.direct}
        self._int_checks = {feed.name: statements.int_checks(feed) for feed in FEEDS}
        # Per feed, compiled in start(): COPY statements (text, binary, direct) and type oids.
        self._copy: dict[tuple[str, str], bytes] = {}
        self._oids: dict[tuple[str, str], list[int]] = {}

    def start(self) -> None:
        self._open()

    def _open(self) -> None:
        """Connect, check the schema, create the staging tables and compile the COPYs (the
        staging tables are temporary: a new connection needs its own)."""
        try:
            self._conn = psycopg.connect(self._conninfo)
        except psycopg.Error as exc:
            raise SinkError(f"cannot connect to PostgreSQL: {exc}") from exc
        try:
            self._prepare(self._conn)
        except psycopg.Error as exc:
            raise SinkError(f"cannot prepare the sink's session: {exc}") from exc

    def _prepare(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            check_schema(conn)
            for feed in FEEDS:
                conn.execute(statements.create_stage(feed))
                self._copy[feed.name, "text"] = statements.copy_to_stage(
                    feed, binary=False).as_bytes(conn)
                self._copy[feed.name, "binary"] = statements.copy_to_stage(
                    feed, binary=True).as_bytes(conn)
                self._oids[feed.name, "binary"] = _oids(statements.stage_types(feed))
                if feed.direct:
                    self._copy[feed.name, "direct"] = statements.copy_direct(feed).as_bytes(conn)
                    self._oids[feed.name, "direct"] = _oids(statements.direct_types(feed))

    def write_batch(self, envelopes: Sequence[Envelope],
                    offsets: Sequence[int] | None = None) -> dict[str, int]:
        """Write the batch in one transaction; a connection lost since the last batch (a
        database restart) is replaced by a new one first."""
        return self.write_prepared(self.prepare(envelopes, offsets))

    def prepare(self, envelopes: Sequence[Envelope],
                offsets: Sequence[int] | None = None) -> Prepared:
        """The batch's staging rows per feed (:func:`sinks.rows.rows_of`)."""
        return Prepared(envelopes, rows_of(envelopes, offsets))

    def write_prepared(self, prepared: Prepared) -> dict[str, int]:
        """:meth:`write_batch` of the rows :meth:`prepare` derived."""
        envelopes = prepared.envelopes
        rows: dict[str, list[Row]] = prepared.derived
        if rows is None:
            rows = rows_of(envelopes)
        conn = self._live_connection()
        written = {f.name: len(rows[f.name]) for f in FEEDS if f.event and rows[f.name]}
        if not written:
            return written
        # Binary COPY cannot place a naive timestamp; text COPY lets the server read it.
        binary = all(env.time.tzinfo is not None for env in envelopes)
        try:
            with conn.transaction(), conn.cursor() as cur:
                for feed in FEEDS:
                    staged = rows[feed.name]
                    if not staged or (binary and self._copy_direct(cur, feed, staged)):
                        continue
                    mode = "binary" if binary else "text"
                    with cur.copy(self._copy[feed.name, mode]) as cp:
                        if binary:
                            cp.set_types(self._oids[feed.name, mode])
                        for row in staged:
                            cp.write_row(row)
                    for statement in self._merges(feed, staged):
                        cur.execute(statement)
                if self._audio_keep is not None and rows["sample_audio"]:
                    hashes = sorted({row[AUDIO_HASH] for row in rows["sample_audio"]})
                    cur.execute(PURGE_AUDIO, {"hashes": hashes, "keep": self._audio_keep})
        except (psycopg.Error, OverflowError) as exc:
            raise SinkError(f"batch of {len(envelopes)} events not written: {exc}") from exc
        return written

    def _merges(self, feed: Feed, staged: list[Row]) -> list[bytes]:
        which = statements.variant(feed, staged)
        key = (feed.name, which)
        found = self._sql.get(key)
        if found is None:
            conn = self._connection()
            found = self._sql[key] = [s.as_bytes(conn) for s in statements.merges(feed, which)]
        return found

    def _copy_direct(self, cur: psycopg.Cursor[Any], feed: Feed, staged: list[Row]) -> bool:
        """COPY ``staged`` straight into the target, if the merge would insert every row as
        it is; False (nothing written) where the batch must take the staging table."""
        if not feed.direct:
            return False
        if self._direct_skip[feed.name]:
            self._direct_skip[feed.name] -= 1
            return False
        if not statements.keys_unique(feed, staged) or any(
            not low <= row[i] < high for i, low, high in self._int_checks[feed.name]
            for row in staged if row[i] is not None
        ):  # a key twice, or an integer the merge's cast must reject
            return False
        constants = tuple(feed.constants.values())
        try:
            statement, oids = self._copy[feed.name, "direct"], self._oids[feed.name, "direct"]
            with self._connection().transaction(), cur.copy(statement) as cp:
                cp.set_types(oids)
                if constants:
                    for row in staged:
                        cp.write_row(row + constants)
                else:
                    for row in staged:
                        cp.write_row(row)
        except psycopg.errors.UniqueViolation:
            self._direct_skip[feed.name] = DIRECT_BACKOFF
            return False
        return True

    def _connection(self) -> psycopg.Connection:
        if self._conn is None:
            raise SinkError("the writer is not started: call start() first")
        return self._conn

    def _live_connection(self) -> psycopg.Connection:
        """The connection, reopened (and prepared again) when it was closed or broken."""
        conn = self._connection()
        if conn.closed or conn.broken:
            conn.close()  # kept until a new one opens: a failed open is tried again next time
            self._open()
            conn = self._connection()
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _oids(type_names: list[str]) -> list[int]:
    found = [pg_types.get(name) for name in type_names]
    if any(info is None for info in found):
        raise SinkError(f"unknown column type among {type_names} in sinks/tables.py")
    return [info.oid for info in found if info is not None]
