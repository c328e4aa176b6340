-- Scores of several scoring versions side by side: every scoring.activated (the latest is the
-- version that counts); the evaluations withdrawn because an earlier duplicate displaced their
-- submission (evaluation.cancelled); and what counts for each submission under both.

-- A re-score's statuses and scores name the request they re-score; they never move the
-- submission's own row.
ALTER TABLE status_events ADD COLUMN rescore_of text;
ALTER TABLE scores ADD COLUMN rescore_of text;

CREATE TABLE scoring_activations (
    event_id         text PRIMARY KEY,
    scoring_version  text NOT NULL,
    reason           text,
    activated_at     timestamptz NOT NULL,
    written_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Withdrawn evaluations: a request whose submission an earlier duplicate displaced after it was
-- routed. The submission stands as a FAILED duplicate, with no score, whether or not an
-- evaluator scored it before the withdrawal (its score stays in scores).
CREATE TABLE withdrawals (
    request_event_id   text PRIMARY KEY,
    hash               text NOT NULL,
    hotkey             text,
    uid                integer,
    block              bigint,
    code               text NOT NULL,
    reason             text NOT NULL,
    displaced_by       text NOT NULL,
    displaced_by_hash  text NOT NULL,
    event_id           text NOT NULL,
    withdrawn_at       timestamptz NOT NULL,
    written_at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX withdrawals_hash ON withdrawals (hash);

-- Each submission as the active scoring version sees it (without an activation, the version it
-- was requested for). A submission not scored with the active version yet is QUEUED for it,
-- its notes naming the version it was scored with; its score counts nowhere until then. A
-- withdrawn one is FAILED, scoreless, its notes naming the earlier submission it duplicates.
CREATE VIEW submission_standing AS
SELECT s.hash, s.uid, s.hotkey, s.repo_namespace, s.repo_name, s.block,
       v.version AS scoring_version,
       CASE WHEN w.request_event_id IS NOT NULL THEN 'FAILED'
            WHEN sc.hash IS NOT NULL THEN sc.status
            WHEN s.scoring_version = v.version THEN s.status
            ELSE 'QUEUED' END AS status,
       CASE WHEN w.request_event_id IS NOT NULL THEN NULL
            WHEN sc.hash IS NOT NULL THEN sc.total_score
            WHEN s.scoring_version = v.version THEN s.score END AS score,
       CASE WHEN w.request_event_id IS NOT NULL THEN 'withdrawn: ' || w.reason
            WHEN sc.hash IS NOT NULL THEN sc.reason
            WHEN s.scoring_version = v.version THEN s.notes
            ELSE 'awaiting its ' || v.version || ' score (' || s.scoring_version || ': '
                 || s.status || coalesce(' ' || round(s.score::numeric, 4), '') || ')'
       END AS notes,
       sc.content_hash, sc.manifest, greatest(s.updated_at, w.written_at) AS updated_at
  FROM submissions s
 CROSS JOIN LATERAL (
       SELECT coalesce((SELECT a.scoring_version FROM scoring_activations a
                         ORDER BY a.activated_at DESC, a.event_id DESC LIMIT 1),
                       s.scoring_version) AS version
 ) v
  LEFT JOIN scores sc ON sc.hash = s.hash AND sc.scoring_version = v.version
  LEFT JOIN withdrawals w ON w.request_event_id = s.request_event_id;
