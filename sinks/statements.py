"""The sink's SQL: staging table layouts and the one set-based merge per target table.

Every comparison of event ids and notes is ``COLLATE "C"`` (code point order), the order
``sinks.merge`` reduces a batch with, so a merge picks the same winner in Python and in SQL.
"""

from __future__ import annotations

from psycopg import sql

# Staging table → (target table whose column types it copies, columns).
STAGING: dict[str, tuple[str, tuple[str, ...]]] = {
    "miners": ("miners", ("hotkey", "uid", "coldkey", "block", "event_id", "registered_at")),
    "claims": ("miner_uid_claims", ("uid", "hotkey", "block", "event_id")),
    "status_events": ("status_events", (
        "event_id", "hash", "status", "scoring_version", "evaluator", "note", "time",
    )),
    "submissions": ("submissions", (
        "hash", "hotkey", "uid", "repo_namespace", "repo_name", "revision", "config_template",
        "competition_id", "block", "scoring_version", "request_event_id", "requested_at",
        "status", "status_rank", "notes", "status_at",
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

# Merge order: claims after miners (they clear uids), scores after submissions (they finish
# a status), samples after their scores.
ORDER: tuple[str, ...] = (
    "miners", "claims", "status_events", "submissions", "scores", "sample_results",
    "rejections", "dead_letters",
)

_REQUEST_COLUMNS = (
    "hotkey", "uid", "repo_namespace", "repo_name", "revision", "config_template",
    "competition_id", "block", "request_event_id", "requested_at",
)
_STATUS_COLUMNS = ("status", "status_rank", "notes", "status_at")

# The staged request wins over the row's: the row has none yet, or the staged id is lower.
_REQUEST_WINS = sql.SQL("""(EXCLUDED.request_event_id IS NOT NULL
    AND (s.request_event_id IS NULL
         OR EXCLUDED.request_event_id COLLATE "C" < s.request_event_id))""")
# The staged status wins: the row is not final (rank 3) and the staged status is higher in
# the order (rank, time, notes) that ``sinks.merge.status_order`` uses too.
_STATUS_WINS = sql.SQL("""(EXCLUDED.status_at IS NOT NULL AND s.status_rank < 3
    AND (EXCLUDED.status_rank, EXCLUDED.status_at, coalesce(EXCLUDED.notes, '') COLLATE "C")
      > (s.status_rank, coalesce(s.status_at, '-infinity'), coalesce(s.notes, '') COLLATE "C"))""")


def _take_if(wins: sql.Composable, columns: tuple[str, ...]) -> sql.Composable:
    """``col = CASE WHEN wins THEN EXCLUDED.col ELSE s.col END`` for every column."""
    return sql.SQL(",\n    ").join(
        sql.SQL("{c} = CASE WHEN {w} THEN EXCLUDED.{c} ELSE s.{c} END").format(
            c=sql.Identifier(c), w=wins)
        for c in columns
    )


# One index probe per hash: the request half and the status half each apply only if they win,
# so a status that arrives before its request leaves a placeholder the request fills in.
_SUBMISSIONS = sql.SQL("""
INSERT INTO submissions AS s (hash, hotkey, uid, repo_namespace, repo_name, revision,
       config_template, competition_id, block, scoring_version, request_event_id, requested_at,
       status, status_rank, notes, status_at)
SELECT hash, hotkey, uid, repo_namespace, repo_name, revision, config_template, competition_id,
       block, scoring_version, request_event_id, requested_at,
       coalesce(status, 'QUEUED'), coalesce(status_rank, 0), notes, status_at
  FROM stage_submissions
ON CONFLICT (hash) DO UPDATE SET
    {request},
    scoring_version = CASE WHEN {request_wins} THEN EXCLUDED.scoring_version
                           ELSE coalesce(s.scoring_version, EXCLUDED.scoring_version) END,
    {status},
    updated_at = clock_timestamp()
 WHERE {request_wins} OR {status_wins}""").format(
    request=_take_if(_REQUEST_WINS, _REQUEST_COLUMNS),
    status=_take_if(_STATUS_WINS, _STATUS_COLUMNS),
    request_wins=_REQUEST_WINS, status_wins=_STATUS_WINS,
)

# The merges per staging table (each set-based; staging rows are unique per key).
MERGES: dict[str, tuple[sql.Composable, ...]] = {
    "miners": (sql.SQL("""
        INSERT INTO miners (hotkey, uid, coldkey, block, event_id, registered_at)
        SELECT hotkey, uid, coldkey, block, event_id, registered_at FROM stage_miners
        ON CONFLICT (hotkey) DO UPDATE
           SET uid = EXCLUDED.uid, coldkey = EXCLUDED.coldkey, block = EXCLUDED.block,
               event_id = EXCLUDED.event_id, registered_at = EXCLUDED.registered_at,
               written_at = clock_timestamp()
         WHERE (miners.block, miners.event_id COLLATE "C")
             < (EXCLUDED.block, EXCLUDED.event_id COLLATE "C")"""),),
    "claims": (sql.SQL("""
        INSERT INTO miner_uid_claims (uid, hotkey, block, event_id)
        SELECT uid, hotkey, block, event_id FROM stage_claims
        ON CONFLICT (uid) DO UPDATE
           SET hotkey = EXCLUDED.hotkey, block = EXCLUDED.block, event_id = EXCLUDED.event_id
         WHERE (miner_uid_claims.block, miner_uid_claims.event_id COLLATE "C")
             < (EXCLUDED.block, EXCLUDED.event_id COLLATE "C")"""), sql.SQL("""
        UPDATE miners m SET uid = NULL, written_at = clock_timestamp()
          FROM miner_uid_claims c
         WHERE c.uid IN (SELECT uid FROM stage_claims)
           AND m.uid = c.uid AND m.hotkey <> c.hotkey""")),
    "status_events": (sql.SQL("""
        INSERT INTO status_events (event_id, hash, status, scoring_version, evaluator, note,
               time)
        SELECT event_id, hash, status, scoring_version, evaluator, note, time
          FROM stage_status_events
        ON CONFLICT (event_id) DO NOTHING"""),),
    "submissions": (_SUBMISSIONS,),
    "scores": (sql.SQL("""
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
         WHERE (EXCLUDED.computed_at, EXCLUDED.event_id COLLATE "C")
             < (scores.computed_at, scores.event_id COLLATE "C")"""), sql.SQL("""
        INSERT INTO submissions (hash, scoring_version, status, status_rank, score, notes,
               status_at)
        SELECT DISTINCT ON (hash) hash, scoring_version, status, 3, total_score, reason,
               computed_at
          FROM scores WHERE hash IN (SELECT hash FROM stage_scores)
         ORDER BY hash, computed_at DESC, scoring_version COLLATE "C" DESC
        ON CONFLICT (hash) DO UPDATE
           SET status = EXCLUDED.status, status_rank = 3, score = EXCLUDED.score,
               notes = EXCLUDED.notes, status_at = EXCLUDED.status_at,
               scoring_version = coalesce(submissions.scoring_version, EXCLUDED.scoring_version),
               updated_at = clock_timestamp()
         WHERE (submissions.status_rank, submissions.status, submissions.score,
                submissions.notes, submissions.status_at)
               IS DISTINCT FROM (3, EXCLUDED.status, EXCLUDED.score, EXCLUDED.notes,
                EXCLUDED.status_at)""")),
    # Samples follow the winning score: replaced whole when their score row is the staged one.
    "sample_results": (sql.SQL("""
        DELETE FROM sample_results r USING stage_scores st, scores sc
         WHERE sc.hash = st.hash AND sc.scoring_version = st.scoring_version
           AND sc.event_id = st.event_id AND sc.computed_at = st.computed_at
           AND r.hash = st.hash AND r.scoring_version = st.scoring_version"""), sql.SQL("""
        INSERT INTO sample_results (hash, scoring_version, index, text, speaker, ce, wer,
               transcription, score, error)
        SELECT r.hash, r.scoring_version, r.index, r.text, r.speaker, r.ce, r.wer,
               r.transcription, r.score, r.error
          FROM stage_sample_results r
          JOIN stage_scores st ON st.hash = r.hash AND st.scoring_version = r.scoring_version
          JOIN scores sc ON sc.hash = st.hash AND sc.scoring_version = st.scoring_version
                        AND sc.event_id = st.event_id AND sc.computed_at = st.computed_at""")),
    "rejections": (sql.SQL("""
        INSERT INTO rejections (event_id, code, message, source_event_id, source_type, hotkey,
               uid, hash, repo_namespace, repo_name, block, time)
        SELECT event_id, code, message, source_event_id, source_type, hotkey, uid, hash,
               repo_namespace, repo_name, block, time FROM stage_rejections
        ON CONFLICT (event_id) DO NOTHING"""),),
    "dead_letters": (sql.SQL("""
        INSERT INTO dead_letters (event_id, topic, partition, "offset", error, consumer, raw,
               time)
        SELECT event_id, topic, partition, "offset", error, consumer, raw, time
          FROM stage_dead_letters
        ON CONFLICT (event_id) DO NOTHING"""),),
}
