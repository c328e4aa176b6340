"""The PostgreSQL batch writer: COPY into staging tables, then one set-based merge per table.

Every merge is idempotent and order-insensitive, so replaying a topic, or replaying every topic
into empty tables, yields the same rows:
- miners: upsert by hotkey, the highest (block, event id) wins;
- submissions: created by the request *or* by the first status/score seen for its hash; the
  status only ever moves up the ranks QUEUED < PRECHECK < RUNNING < COMPLETED | FAILED;
- status_events, rejections, dead_letters, scores, sample_results: insert once by key.

Shortcuts, none of which changes the rows written:
- COPY is binary, typed after the staging tables, whose integer columns are bigint so that an
  out-of-range value fails in the merge's cast as with text COPY (binary int4 would wrap). A
  batch holding a timestamp without a time zone takes text COPY (the session time zone reads
  it, as it always did).
- requests and status events are COPYed straight into submissions / status_events inside a
  savepoint when the merge would insert every row as it is (no duplicate key in the batch, no
  out-of-range integer); a unique violation rolls back to the savepoint and the batch takes
  the staging table and the merge (see ``_DIRECT``).
- statuses are reduced in Python to the highest rank per hash (ties: any one, as with
  ``DISTINCT ON``). A QUEUED status (rank 0) never moves an existing submission: it only
  creates missing rows (``ON CONFLICT DO NOTHING``), and is dropped when the batch holds the
  request for its hash (the requests, written first, create that row).
- the requests merge skips its ``DISTINCT ON`` sort when the batch names each hash once.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from schemas.envelope import Envelope
from schemas.events import (
    DeadLetter,
    EvaluationRequested,
    EvaluationStatusChanged,
    MinerRegistered,
    ScoreComputed,
    SubmissionRejected,
)
from sinks.base import Sink
from sinks.exceptions import SinkError

RANK = {"QUEUED": 0, "PRECHECK": 1, "RUNNING": 2, "COMPLETED": 3, "FAILED": 3}

# Staging tables: same columns as the targets they feed (integers as bigint, see _WIDENED);
# temp, emptied at each commit.
_STAGING: dict[str, tuple[str, ...]] = {
    "miners": ("hotkey", "uid", "coldkey", "block", "event_id", "registered_at"),
    "requests": (
        "hash", "hotkey", "uid", "repo_namespace", "repo_name", "revision", "config_template",
        "competition_id", "block", "scoring_version", "request_event_id", "requested_at",
    ),
    "status_events": (
        "event_id", "hash", "status", "scoring_version", "evaluator", "note", "time",
    ),
    "scores": (
        "hash", "scoring_version", "status", "total_score", "reason", "revision", "evaluator",
        "timings", "event_id", "request_event_id", "computed_at",
    ),
    "sample_results": (
        "hash", "scoring_version", "index", "text", "speaker", "ce", "wer", "transcription",
        "score", "error",
    ),
    "rejections": (
        "event_id", "code", "message", "source_event_id", "source_type", "hotkey", "uid", "hash",
        "repo_namespace", "repo_name", "block", "time",
    ),
    "dead_letters": (
        "event_id", "topic", "partition", "offset", "error", "consumer", "raw", "time",
    ),
    # One row per hash: the batch's highest-ranked status, as it would create the submission.
    "statuses": ("hash", "scoring_version", "status", "status_rank", "notes", "status_at"),
}
_TARGET_OF = {"requests": "submissions", "statuses": "submissions"}
# Staged as bigint: binary COPY would wrap an out-of-range int4 silently, the merge's cast fails.
_WIDENED = {"smallint": "bigint", "integer": "bigint"}

_MERGES: dict[str, str] = {
    "miners": """
        INSERT INTO miners (hotkey, uid, coldkey, block, event_id, registered_at)
        SELECT DISTINCT ON (hotkey) hotkey, uid, coldkey, block, event_id, registered_at
          FROM stage_miners ORDER BY hotkey, block DESC, event_id
        ON CONFLICT (hotkey) DO UPDATE
           SET uid = EXCLUDED.uid, coldkey = EXCLUDED.coldkey, block = EXCLUDED.block,
               event_id = EXCLUDED.event_id, registered_at = EXCLUDED.registered_at
         WHERE (miners.block, miners.event_id) < (EXCLUDED.block, EXCLUDED.event_id)""",
    "requests": """
        INSERT INTO submissions (hash, hotkey, uid, repo_namespace, repo_name, revision,
               config_template, competition_id, block, scoring_version, status, status_rank,
               request_event_id, requested_at)
        SELECT DISTINCT ON (hash) hash, hotkey, uid, repo_namespace, repo_name, revision,
               config_template, competition_id, block, scoring_version, 'QUEUED', 0,
               request_event_id, requested_at
          FROM stage_requests ORDER BY hash, request_event_id
        ON CONFLICT (hash) DO UPDATE
           SET hotkey = EXCLUDED.hotkey, uid = EXCLUDED.uid,
               repo_namespace = EXCLUDED.repo_namespace, repo_name = EXCLUDED.repo_name,
               revision = EXCLUDED.revision, config_template = EXCLUDED.config_template,
               competition_id = EXCLUDED.competition_id, block = EXCLUDED.block,
               request_event_id = EXCLUDED.request_event_id,
               requested_at = EXCLUDED.requested_at, updated_at = clock_timestamp()
         WHERE submissions.request_event_id IS NULL""",
    "status_events": """
        INSERT INTO status_events (event_id, hash, status, scoring_version, evaluator, note,
               time)
        SELECT event_id, hash, status, scoring_version, evaluator, note, time
          FROM stage_status_events
        ON CONFLICT (event_id) DO NOTHING""",
    # Staged rows are already one per hash (see _statuses); rank 0 never updates a submission.
    "statuses": """
        INSERT INTO submissions (hash, scoring_version, status, status_rank, notes, status_at)
        SELECT hash, scoring_version, status, status_rank, notes, status_at
          FROM stage_statuses WHERE status_rank = 0
        ON CONFLICT (hash) DO NOTHING;
        INSERT INTO submissions (hash, scoring_version, status, status_rank, notes, status_at)
        SELECT hash, scoring_version, status, status_rank, notes, status_at
          FROM stage_statuses WHERE status_rank > 0
        ON CONFLICT (hash) DO UPDATE
           SET status = EXCLUDED.status, status_rank = EXCLUDED.status_rank,
               notes = EXCLUDED.notes, status_at = EXCLUDED.status_at,
               scoring_version = coalesce(submissions.scoring_version, EXCLUDED.scoring_version),
               updated_at = clock_timestamp()
         WHERE submissions.status_rank < EXCLUDED.status_rank""",
    "scores": """
        INSERT INTO scores (hash, scoring_version, status, total_score, reason, revision,
               evaluator, timings, event_id, request_event_id, computed_at)
        SELECT DISTINCT ON (hash, scoring_version) hash, scoring_version, status, total_score,
               reason, revision, evaluator, timings, event_id, request_event_id, computed_at
          FROM stage_scores ORDER BY hash, scoring_version, computed_at, event_id
        ON CONFLICT (hash, scoring_version) DO NOTHING;
        INSERT INTO submissions (hash, scoring_version, status, status_rank, score, notes,
               status_at)
        SELECT s.hash, s.scoring_version, s.status, 3, s.total_score, s.reason, s.computed_at
          FROM scores s
         WHERE (s.hash, s.scoring_version) IN (SELECT hash, scoring_version FROM stage_scores)
        ON CONFLICT (hash) DO UPDATE
           SET status = EXCLUDED.status, status_rank = 3, score = EXCLUDED.score,
               notes = EXCLUDED.notes, status_at = EXCLUDED.status_at,
               scoring_version = coalesce(submissions.scoring_version, EXCLUDED.scoring_version),
               updated_at = clock_timestamp()
         WHERE submissions.status_rank < 3""",
    "sample_results": """
        INSERT INTO sample_results (hash, scoring_version, index, text, speaker, ce, wer,
               transcription, score, error)
        SELECT st.hash, st.scoring_version, st.index, st.text, st.speaker, st.ce, st.wer,
               st.transcription, st.score, st.error
          FROM stage_sample_results st
          JOIN scores sc ON sc.hash = st.hash AND sc.scoring_version = st.scoring_version
        ON CONFLICT (hash, scoring_version, index) DO NOTHING""",
    "rejections": """
        INSERT INTO rejections (event_id, code, message, source_event_id, source_type, hotkey,
               uid, hash, repo_namespace, repo_name, block, time)
        SELECT event_id, code, message, source_event_id, source_type, hotkey, uid, hash,
               repo_namespace, repo_name, block, time FROM stage_rejections
        ON CONFLICT (event_id) DO NOTHING""",
    "dead_letters": """
        INSERT INTO dead_letters (event_id, topic, partition, "offset", error, consumer, raw,
               time)
        SELECT event_id, topic, partition, "offset", error, consumer, raw, time
          FROM stage_dead_letters
        ON CONFLICT (event_id) DO NOTHING""",
}
# The requests merge without its sort, for a batch that names each hash once.
_REQUESTS_UNIQUE = (
    _MERGES["requests"]
    .replace("SELECT DISTINCT ON (hash) hash", "SELECT hash", 1)
    .replace(" ORDER BY hash, request_event_id", "", 1)
)
assert "DISTINCT" not in _REQUESTS_UNIQUE and "ORDER BY" not in _REQUESTS_UNIQUE
# Every merge is order-insensitive; "requests" must run before "statuses" only because
# _statuses drops the QUEUED statuses whose submission the batch's requests create.
_ORDER = ("miners", "requests", "status_events", "statuses", "scores", "sample_results",
          "rejections", "dead_letters")


def rows_of(envelopes: Sequence[Envelope]) -> dict[str, list[tuple[Any, ...]]]:
    """Split a batch into staging rows per table (pure: no database)."""
    rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in _STAGING}
    for env in envelopes:
        p = env.payload
        if isinstance(p, MinerRegistered):
            rows["miners"].append((p.hotkey, p.uid, p.coldkey, p.block, env.event_id, env.time))
        elif isinstance(p, EvaluationRequested):
            rows["requests"].append((
                p.hash, p.hotkey, p.uid, p.repo_namespace, p.repo_name, p.revision,
                p.config_template, p.competition_id, p.block, p.scoring_version, env.event_id,
                env.time,
            ))
        elif isinstance(p, EvaluationStatusChanged):
            rows["status_events"].append(
                (env.event_id, p.hash, p.status, p.scoring_version, p.evaluator, p.note, env.time)
            )
        elif isinstance(p, ScoreComputed):
            rows["scores"].append((
                p.hash, p.scoring_version, p.status, p.total_score, p.reason, p.revision,
                p.evaluator, Jsonb(p.timings), env.event_id, p.request_event_id, env.time,
            ))
            rows["sample_results"].extend(
                (p.hash, p.scoring_version, s.index, s.text, s.speaker, s.ce, s.wer,
                 s.transcription, s.score, s.error)
                for s in p.samples
            )
        elif isinstance(p, SubmissionRejected):
            rows["rejections"].append((
                env.event_id, p.code.value, p.message, p.source_event_id, p.source_type,
                p.hotkey, p.uid, p.hash, p.repo_namespace, p.repo_name, p.block, env.time,
            ))
        elif isinstance(p, DeadLetter):
            rows["dead_letters"].append((
                env.event_id, p.topic, p.partition, p.offset, p.error, p.consumer,
                base64.b64decode(p.raw_b64), env.time,
            ))
    return rows


def _statuses(
    status_events: Sequence[tuple[Any, ...]], requests: Sequence[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """The status rows the submissions merge needs: the highest rank per hash, and no QUEUED
    status whose hash has a request in the same batch (that request creates the row, and rank
    0 never moves an existing one)."""
    best: dict[str, tuple[Any, ...]] = {}
    for _event_id, h, status, scoring_version, _evaluator, note, time in status_events:
        rank = RANK[status]  # status events are QUEUED, PRECHECK or RUNNING
        kept = best.get(h)
        if kept is None or kept[3] < rank:
            best[h] = (h, scoring_version, status, rank, note, time)
    for row in requests:
        kept = best.get(row[0])
        if kept is not None and kept[3] == 0:
            del best[row[0]]
    return list(best.values())


def _statements(name: str, staged: Sequence[tuple[Any, ...]]) -> list[bytes]:
    """The merge statements for one staging table holding ``staged``."""
    if name == "requests" and len({row[0] for row in staged}) == len(staged):
        return [_REQUESTS_UNIQUE.encode()]
    statements = _MERGES[name].split(";")
    if name == "statuses":
        queued, moved = statements
        ranks = {row[3] for row in staged}
        statements = ([queued] if 0 in ranks else []) + ([moved] if ranks - {0} else [])
    return [statement.encode() for statement in statements]


def _copy_statement(table: str, columns: Sequence[str], binary: bool) -> bytes:
    quoted = ", ".join(f'"{col}"' for col in columns)
    return f"COPY {table} ({quoted}) FROM STDIN{' (FORMAT BINARY)' if binary else ''}".encode()


_COPY_TEXT = {name: _copy_statement(f"stage_{name}", c, False) for name, c in _STAGING.items()}
_COPY_BINARY = {name: _copy_statement(f"stage_{name}", c, True) for name, c in _STAGING.items()}

# Staging tables whose merge, when no row conflicts, inserts each staged row as it is (plus
# constants): (target, its columns, the constants appended to each staged row). Their rows
# are COPYed straight into the target inside a savepoint; a unique violation (a replay, a row
# created earlier by a status, a duplicate key in the batch) rolls back to the savepoint and
# the batch takes the staging table and the merge instead.
_DIRECT: dict[str, tuple[str, tuple[str, ...], tuple[Any, ...]]] = {
    "requests": ("submissions", (*_STAGING["requests"], "status", "status_rank"), ("QUEUED", 0)),
    "status_events": ("status_events", _STAGING["status_events"], ()),
}
# After a unique violation, that many batches of the table go straight to the merge (a
# replay conflicts on every batch) before COPY straight into the target is tried again.
_DIRECT_BACKOFF = 16
_DIRECT_COPY = {name: _copy_statement(t, cols, True) for name, (t, cols, _) in _DIRECT.items()}
_INT_RANGES = {"smallint": (-(2**15), 2**15), "integer": (-(2**31), 2**31)}


class PostgresSink(Sink):
    """Writes batches into PostgreSQL: one transaction a batch, COPY + one merge a table."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._conn: psycopg.Connection | None = None
        self._types: dict[str, list[int]] = {}
        # table → (target column types, (row position, low, high) of every int2/int4 column)
        self._direct: dict[str, tuple[list[int], list[tuple[int, int, int]]]] = {}
        self._direct_skip: dict[str, int] = {}

    def setup(self) -> None:
        try:
            self._conn = psycopg.connect(self._conninfo)
        except psycopg.Error as exc:
            raise SinkError(f"cannot connect to PostgreSQL: {exc}") from exc
        with self._conn.transaction():
            for name, columns in _STAGING.items():
                target = _TARGET_OF.get(name, name)
                types = self._column_types(target)
                self._conn.execute(
                    sql.SQL(
                        "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS"
                        " AS SELECT {} FROM {} WITH NO DATA"
                    ).format(
                        sql.Identifier(f"stage_{name}"),
                        sql.SQL(", ").join(
                            sql.SQL("{}::{} AS {}").format(
                                sql.Identifier(col),
                                sql.SQL(_WIDENED[types[col][1]]),
                                sql.Identifier(col),
                            )
                            if types[col][1] in _WIDENED
                            else sql.Identifier(col)
                            for col in columns
                        ),
                        sql.Identifier(target),
                    )
                )
                staged = self._column_types(f"pg_temp.stage_{name}")
                if tuple(staged) != columns:
                    raise SinkError(f"stage_{name} has columns {list(staged)}, not {columns}")
                self._types[name] = [oid for oid, _ in staged.values()]
            for name, (target, columns, _constants) in _DIRECT.items():
                types = self._column_types(target)
                self._direct[name] = (
                    [types[col][0] for col in columns],
                    [(i, *_INT_RANGES[types[col][1]])
                     for i, col in enumerate(_STAGING[name]) if types[col][1] in _INT_RANGES],
                )
                self._direct_skip[name] = 0

    def _column_types(self, table: str) -> dict[str, tuple[int, str]]:
        """``column → (type oid, type name)`` of ``table``, in column order."""
        assert self._conn is not None
        cur = self._conn.execute(
            "SELECT attname, atttypid, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (table,),
        )
        return {col: (oid, typ) for col, oid, typ in cur}

    def write_batch(self, envelopes: Sequence[Envelope]) -> dict[str, int]:
        assert self._conn is not None, "call setup() first"
        rows = rows_of(envelopes)
        written = {name: len(r) for name, r in rows.items() if r}
        if not written:
            return written
        rows["statuses"] = _statuses(rows["status_events"], rows["requests"])
        # Binary COPY cannot place a naive timestamp; text COPY lets the server read it.
        binary = all(env.time.tzinfo is not None for env in envelopes)
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                for name in _ORDER:
                    staged = rows[name]
                    if not staged or (binary and self._copy_direct(cur, name, staged)):
                        continue
                    with cur.copy(_COPY_BINARY[name] if binary else _COPY_TEXT[name]) as cp:
                        if binary:
                            cp.set_types(self._types[name])
                        for row in staged:
                            cp.write_row(row)
                    for statement in _statements(name, staged):
                        cur.execute(statement)
        except (psycopg.Error, OverflowError) as exc:
            raise SinkError(f"batch of {len(envelopes)} events not written: {exc}") from exc
        return written

    def _copy_direct(
        self, cur: psycopg.Cursor[Any], name: str, staged: list[tuple[Any, ...]]
    ) -> bool:
        """COPY ``staged`` straight into the target, if the merge would insert every row as
        it is; False (nothing written) where the batch must take the staging table."""
        if name not in _DIRECT:
            return False
        if self._direct_skip[name]:
            self._direct_skip[name] -= 1
            return False
        types, int_columns = self._direct[name]
        if len({row[0] for row in staged}) != len(staged) or any(
            not low <= row[i] < high for i, low, high in int_columns for row in staged
            if row[i] is not None
        ):  # a duplicate key, or an integer the merge's cast must reject
            return False
        constants = _DIRECT[name][2]
        assert self._conn is not None
        try:
            with self._conn.transaction(), cur.copy(_DIRECT_COPY[name]) as cp:
                cp.set_types(types)
                if constants:
                    for row in staged:
                        cp.write_row(row + constants)
                else:
                    for row in staged:
                        cp.write_row(row)
        except psycopg.errors.UniqueViolation:
            self._direct_skip[name] = _DIRECT_BACKOFF
            return False
        return True

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
