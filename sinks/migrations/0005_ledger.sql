-- The ledger's answers in PostgreSQL (speechstream/ledger.py writes each rule once; the view
-- below gives the same answers, proven by tests/integration/test_ledger_differential.py).

-- Every evaluation request routed (evaluation.requests), not only the first written: the one
-- that holds a hash's place is the earliest (block, submission event id) not withdrawn, and the
-- log may deliver a later block first.
CREATE TABLE evaluation_requests (
    event_id         text PRIMARY KEY,
    hash             text NOT NULL,
    hotkey           text NOT NULL,
    uid              integer NOT NULL,
    repo_namespace   text NOT NULL,
    repo_name        text NOT NULL,
    block            bigint NOT NULL,
    scoring_version  text NOT NULL,
    source_event_id  text NOT NULL,
    requested_at     timestamptz NOT NULL,
    written_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX evaluation_requests_hash ON evaluation_requests (hash);
CREATE INDEX status_events_hash_version ON status_events (hash, scoring_version);

-- A database written before this migration knows one request per hash (a `sink rebuild`
-- reads them all again); its submission event id is not known, the request's stands for it.
INSERT INTO evaluation_requests (event_id, hash, hotkey, uid, repo_namespace, repo_name, block,
                                 scoring_version, source_event_id, requested_at)
SELECT request_event_id, hash, hotkey, uid, repo_namespace, repo_name, block, scoring_version,
       request_event_id, coalesce(requested_at, created_at)
  FROM submissions
 WHERE request_event_id IS NOT NULL AND hotkey IS NOT NULL AND uid IS NOT NULL
   AND repo_namespace IS NOT NULL AND repo_name IS NOT NULL AND block IS NOT NULL;

-- The latest activation is the latest in the log (scoring.active has one partition), never the
-- time its writer put on it. Rows written before this migration have no position.
ALTER TABLE scoring_activations ADD COLUMN position bigint;

-- How each submission stands under the active scoring version (without an activation, the
-- version it was requested for): the rules of speechstream/ledger.py, one for one.
DROP VIEW submission_standing;
CREATE VIEW submission_standing AS
WITH active AS (
    SELECT a.scoring_version FROM scoring_activations a
     ORDER BY a.position DESC NULLS LAST, a.activated_at DESC, a.event_id DESC LIMIT 1
), accepted AS (
    -- The request that holds the hash's place: not withdrawn first, then the earliest.
    SELECT DISTINCT ON (r.hash) r.event_id, r.hash, r.hotkey, r.uid, r.repo_namespace,
           r.repo_name, r.block, r.scoring_version, w.reason AS withdrawn,
           w.written_at AS withdrawn_written_at
      FROM evaluation_requests r
      LEFT JOIN withdrawals w ON w.request_event_id = r.event_id
     ORDER BY r.hash, w.request_event_id IS NOT NULL, r.block, r.source_event_id COLLATE "C",
              r.event_id COLLATE "C"
), own_status AS (
    -- A submission's own status per version: the highest rank, then the smallest event id
    -- (a routed request is its QUEUED; re-scores' statuses are left out).
    SELECT DISTINCT ON (e.hash, e.scoring_version) e.hash, e.scoring_version, e.status, e.note
      FROM status_events e
     WHERE e.rescore_of IS NULL
     ORDER BY e.hash, e.scoring_version,
              array_position(ARRAY['QUEUED', 'PRECHECK', 'RUNNING'], e.status) DESC,
              e.event_id COLLATE "C"
)
SELECT a.hash, a.uid, a.hotkey, a.repo_namespace, a.repo_name, a.block,
       v.version AS scoring_version,
       CASE WHEN a.withdrawn IS NOT NULL THEN 'FAILED'
            WHEN sc.hash IS NOT NULL THEN sc.status
            WHEN a.scoring_version = v.version THEN coalesce(st.status, 'QUEUED')
            ELSE 'QUEUED' END AS status,
       CASE WHEN a.withdrawn IS NOT NULL THEN NULL
            WHEN sc.hash IS NOT NULL THEN sc.total_score END AS score,
       CASE WHEN a.withdrawn IS NOT NULL THEN 'withdrawn: ' || a.withdrawn
            WHEN sc.hash IS NOT NULL THEN sc.reason
            WHEN a.scoring_version = v.version THEN st.note
            ELSE 'awaiting its ' || v.version || ' score (' || a.scoring_version || ': '
                 || coalesce(own.status, st.status, 'QUEUED')
                 || coalesce(' ' || round(own.total_score::numeric, 4), '') || ')'
       END AS notes,
       sc.content_hash, sc.manifest, a.event_id AS request_event_id,
       a.withdrawn AS withdrawn,
       greatest(s.updated_at, a.withdrawn_written_at, sc.written_at) AS updated_at
  FROM accepted a
 CROSS JOIN LATERAL (
       SELECT coalesce((SELECT scoring_version FROM active), a.scoring_version) AS version
 ) v
  LEFT JOIN scores sc ON sc.hash = a.hash AND sc.scoring_version = v.version
  LEFT JOIN scores own ON own.hash = a.hash AND own.scoring_version = a.scoring_version
  LEFT JOIN own_status st ON st.hash = a.hash AND st.scoring_version = a.scoring_version
  LEFT JOIN submissions s ON s.hash = a.hash;
