"""The PostgreSQL batch writer: COPY into staging tables, then one set-based merge per table.

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
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from schemas.envelope import Envelope
from sinks.base import Sink
from sinks.exceptions import SinkError
from sinks.merge import TABLES, StagedBatch, reduce_batch

# Staging table → (target table whose column types it copies, columns).
STAGING: dict[str, tuple[str, tuple[str, ...]]] = {
    "miners": ("miners", ("hotkey", "uid", "coldkey", "block", "event_id", "registered_at")),
    "claims": ("miner_uid_claims", ("uid", "hotkey", "block", "event_id")),
    "requests": ("submissions", (
        "hash", "hotkey", "uid", "repo_namespace", "repo_name", "revision", "config_template",
        "competition_id", "block", "scoring_version", "request_event_id", "requested_at",
    )),
    "status_events": ("status_events", (
        "event_id", "hash", "status", "scoring_version", "evaluator", "note", "time",
    )),
    "statuses": ("submissions", (
        "hash", "scoring_version", "status", "status_rank", "notes", "status_at",
    )),
    "scores": ("scores", (
        "hash", "scoring_version", "status", "total_score", "reason", "revision", "evaluator",
        "timings", "event_id", "request_event_id", "computed_at",
    )),
    "sample_results": ("sample_results", (
        "hash", "scoring_version", "index", "text", "speaker", "ce", "wer", "transcription",
        "score", "error",
    )),
    "rejections": ("rejections", (
        "event_id", "code", "message", "source_event_id", "source_type", "hotkey", "uid", "hash",
        "repo_namespace", "repo_name", "block", "time",
    )),
    "dead_letters": ("dead_letters", (
        "event_id", "topic", "partition", "offset", "error", "consumer", "raw", "time",
    )),
}

# The merges per staging table (each statement set-based; staging rows are unique per key).
MERGES: dict[str, tuple[str, ...]] = {
    "miners": ("""
        INSERT INTO miners (hotkey, uid, coldkey, block, event_id, registered_at)
        SELECT hotkey, uid, coldkey, block, event_id, registered_at FROM stage_miners
        ON CONFLICT (hotkey) DO UPDATE
           SET uid = EXCLUDED.uid, coldkey = EXCLUDED.coldkey, block = EXCLUDED.block,
               event_id = EXCLUDED.event_id, registered_at = EXCLUDED.registered_at
         WHERE (miners.block, miners.event_id) < (EXCLUDED.block, EXCLUDED.event_id)""",),
    "claims": ("""
        INSERT INTO miner_uid_claims (uid, hotkey, block, event_id)
        SELECT uid, hotkey, block, event_id FROM stage_claims
        ON CONFLICT (uid) DO UPDATE
           SET hotkey = EXCLUDED.hotkey, block = EXCLUDED.block, event_id = EXCLUDED.event_id
         WHERE (miner_uid_claims.block, miner_uid_claims.event_id)
             < (EXCLUDED.block, EXCLUDED.event_id)""", """
        UPDATE miners m SET uid = NULL, written_at = clock_timestamp()
          FROM miner_uid_claims c
         WHERE c.uid IN (SELECT uid FROM stage_claims)
           AND m.uid = c.uid AND m.hotkey <> c.hotkey""",),
    "requests": ("""
        INSERT INTO submissions (hash, hotkey, uid, repo_namespace, repo_name, revision,
               config_template, competition_id, block, scoring_version, status, status_rank,
               request_event_id, requested_at,
               notes, status_at)
        SELECT r.hash, r.hotkey, r.uid, r.repo_namespace, r.repo_name, r.revision,
               r.config_template, r.competition_id, r.block, r.scoring_version,
               coalesce(s.status, 'QUEUED'), coalesce(s.status_rank, 0), r.request_event_id,
               r.requested_at, s.notes, s.status_at
          FROM stage_requests r LEFT JOIN stage_statuses s ON s.hash = r.hash
        ON CONFLICT (hash) DO UPDATE
           SET hotkey = EXCLUDED.hotkey, uid = EXCLUDED.uid,
               repo_namespace = EXCLUDED.repo_namespace, repo_name = EXCLUDED.repo_name,
               revision = EXCLUDED.revision, config_template = EXCLUDED.config_template,
               competition_id = EXCLUDED.competition_id, block = EXCLUDED.block,
               scoring_version = EXCLUDED.scoring_version,
               request_event_id = EXCLUDED.request_event_id,
               requested_at = EXCLUDED.requested_at, updated_at = clock_timestamp()
         WHERE submissions.request_event_id IS NULL
            OR EXCLUDED.request_event_id < submissions.request_event_id""",),
    "status_events": ("""
        INSERT INTO status_events (event_id, hash, status, scoring_version, evaluator, note,
               time)
        SELECT event_id, hash, status, scoring_version, evaluator, note, time
          FROM stage_status_events
        ON CONFLICT (event_id) DO NOTHING""",),
    "statuses": ("""
        INSERT INTO submissions (hash, scoring_version, status, status_rank, notes, status_at)
        SELECT hash, scoring_version, status, status_rank, notes, status_at FROM stage_statuses
        ON CONFLICT (hash) DO UPDATE
           SET status = EXCLUDED.status, status_rank = EXCLUDED.status_rank,
               notes = EXCLUDED.notes, status_at = EXCLUDED.status_at,
               scoring_version = coalesce(submissions.scoring_version, EXCLUDED.scoring_version),
               updated_at = clock_timestamp()
         WHERE submissions.status_rank < 3
           AND (EXCLUDED.status_rank, EXCLUDED.status_at, coalesce(EXCLUDED.notes, ''))
             > (submissions.status_rank, coalesce(submissions.status_at, '-infinity'),
                coalesce(submissions.notes, ''))""",),
    "scores": ("""
        INSERT INTO scores (hash, scoring_version, status, total_score, reason, revision,
               evaluator, timings, event_id, request_event_id, computed_at)
        SELECT hash, scoring_version, status, total_score, reason, revision, evaluator,
               timings, event_id, request_event_id, computed_at FROM stage_scores
        ON CONFLICT (hash, scoring_version) DO UPDATE
           SET status = EXCLUDED.status, total_score = EXCLUDED.total_score,
               reason = EXCLUDED.reason, revision = EXCLUDED.revision,
               evaluator = EXCLUDED.evaluator, timings = EXCLUDED.timings,
               event_id = EXCLUDED.event_id, request_event_id = EXCLUDED.request_event_id,
               computed_at = EXCLUDED.computed_at, written_at = clock_timestamp()
         WHERE (EXCLUDED.computed_at, EXCLUDED.event_id)
             < (scores.computed_at, scores.event_id)""", """
        INSERT INTO submissions (hash, scoring_version, status, status_rank, score, notes,
               status_at)
        SELECT DISTINCT ON (hash) hash, scoring_version, status, 3, total_score, reason,
               computed_at
          FROM scores WHERE hash IN (SELECT hash FROM stage_scores)
         ORDER BY hash, computed_at DESC, scoring_version DESC
        ON CONFLICT (hash) DO UPDATE
           SET status = EXCLUDED.status, status_rank = 3, score = EXCLUDED.score,
               notes = EXCLUDED.notes, status_at = EXCLUDED.status_at,
               scoring_version = coalesce(submissions.scoring_version, EXCLUDED.scoring_version),
               updated_at = clock_timestamp()
         WHERE (submissions.status_rank, submissions.status, submissions.score,
                submissions.notes, submissions.status_at)
               IS DISTINCT FROM (3, EXCLUDED.status, EXCLUDED.score, EXCLUDED.notes,
                EXCLUDED.status_at)""",),
    # Samples follow the winning score: replaced whole when their score row is the staged one.
    "sample_results": ("""
        DELETE FROM sample_results r USING stage_scores st, scores sc
         WHERE sc.hash = st.hash AND sc.scoring_version = st.scoring_version
           AND sc.event_id = st.event_id AND sc.computed_at = st.computed_at
           AND r.hash = st.hash AND r.scoring_version = st.scoring_version""", """
        INSERT INTO sample_results (hash, scoring_version, index, text, speaker, ce, wer,
               transcription, score, error)
        SELECT r.hash, r.scoring_version, r.index, r.text, r.speaker, r.ce, r.wer,
               r.transcription, r.score, r.error
          FROM stage_sample_results r
          JOIN stage_scores st ON st.hash = r.hash AND st.scoring_version = r.scoring_version
          JOIN scores sc ON sc.hash = st.hash AND sc.scoring_version = st.scoring_version
                        AND sc.event_id = st.event_id AND sc.computed_at = st.computed_at""",),
    "rejections": ("""
        INSERT INTO rejections (event_id, code, message, source_event_id, source_type, hotkey,
               uid, hash, repo_namespace, repo_name, block, time)
        SELECT event_id, code, message, source_event_id, source_type, hotkey, uid, hash,
               repo_namespace, repo_name, block, time FROM stage_rejections
        ON CONFLICT (event_id) DO NOTHING""",),
    "dead_letters": ("""
        INSERT INTO dead_letters (event_id, topic, partition, "offset", error, consumer, raw,
               time)
        SELECT event_id, topic, partition, "offset", error, consumer, raw, time
          FROM stage_dead_letters
        ON CONFLICT (event_id) DO NOTHING""",),
}
# Merge order: claims after miners (it clears uids), samples after their scores.
ORDER = ("miners", "claims", "requests", "status_events", "statuses", "scores",
         "sample_results", "rejections", "dead_letters")


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
                    cur.execute(sql.SQL(statement))  # type: ignore[arg-type]  # constant
    return staged.counts()


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
