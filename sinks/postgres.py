"""The PostgreSQL batch writer: COPY into staging tables, then one set-based merge per table.

Every merge is idempotent and order-insensitive, so replaying a topic, or replaying every topic
into empty tables, yields the same rows:
- miners: upsert by hotkey, the highest (block, event id) wins;
- submissions: created by the request *or* by the first status/score seen for its hash; the
  status only ever moves up the ranks QUEUED < PRECHECK < RUNNING < COMPLETED | FAILED;
- status_events, rejections, dead_letters, scores, sample_results: insert once by key.
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

# Staging tables: same columns as the targets they feed; temp, emptied at each commit.
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
}
_TARGET_OF = {"requests": "submissions"}

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
        ON CONFLICT (event_id) DO NOTHING;
        INSERT INTO submissions (hash, scoring_version, status, status_rank, notes, status_at)
        SELECT DISTINCT ON (hash) hash, scoring_version, status,
               CASE status WHEN 'QUEUED' THEN 0 WHEN 'PRECHECK' THEN 1 ELSE 2 END, note, time
          FROM stage_status_events
         ORDER BY hash, CASE status WHEN 'QUEUED' THEN 0 WHEN 'PRECHECK' THEN 1 ELSE 2 END DESC
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
# Order matters only for speed; every merge is order-insensitive.
_ORDER = ("miners", "requests", "status_events", "scores", "sample_results", "rejections",
          "dead_letters")


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


class PostgresSink(Sink):
    """Writes batches into PostgreSQL: one transaction a batch, COPY + one merge a table."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._conn: psycopg.Connection | None = None

    def setup(self) -> None:
        try:
            self._conn = psycopg.connect(self._conninfo)
        except psycopg.Error as exc:
            raise SinkError(f"cannot connect to PostgreSQL: {exc}") from exc
        with self._conn.transaction():
            for name in _STAGING:
                target = _TARGET_OF.get(name, name)
                self._conn.execute(
                    sql.SQL(
                        "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS"
                        " AS SELECT {} FROM {} WITH NO DATA"
                    ).format(
                        sql.Identifier(f"stage_{name}"),
                        sql.SQL(", ").join(map(sql.Identifier, _STAGING[name])),
                        sql.Identifier(target),
                    )
                )

    def write_batch(self, envelopes: Sequence[Envelope]) -> dict[str, int]:
        assert self._conn is not None, "call setup() first"
        rows = rows_of(envelopes)
        written = {name: len(r) for name, r in rows.items() if r}
        if not written:
            return written
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                for name in _ORDER:
                    if not rows[name]:
                        continue
                    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
                        sql.Identifier(f"stage_{name}"),
                        sql.SQL(", ").join(map(sql.Identifier, _STAGING[name])),
                    )
                    with cur.copy(copy) as cp:
                        for row in rows[name]:
                            cp.write_row(row)
                    for statement in _MERGES[name].split(";"):
                        cur.execute(statement.encode())
        except psycopg.Error as exc:
            raise SinkError(f"batch of {len(envelopes)} events not written: {exc}") from exc
        return written

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
