-- Nothing a writer chose orders what readers show, and a score shows only where it answers a
-- request (the rules of speechstream/ledger.py).

-- The latest weights vector is the latest in the log (weights has one partition), never the
-- time its writer put on it. Rows written before this migration have no position.
ALTER TABLE weights ADD COLUMN position bigint;

-- A score for a hash never requested, or naming a request it does not answer, shows nowhere.
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
  -- A score counts when it answers a request of its hash (its own, or the one it re-scores).
  LEFT JOIN scores sc ON sc.hash = a.hash AND sc.scoring_version = v.version
        AND EXISTS (SELECT 1 FROM evaluation_requests q
                     WHERE q.hash = sc.hash AND q.event_id IN (sc.request_event_id, sc.rescore_of))
  LEFT JOIN scores own ON own.hash = a.hash AND own.scoring_version = a.scoring_version
        AND EXISTS (SELECT 1 FROM evaluation_requests q
                     WHERE q.hash = own.hash
                       AND q.event_id IN (own.request_event_id, own.rescore_of))
  LEFT JOIN own_status st ON st.hash = a.hash AND st.scoring_version = a.scoring_version
  LEFT JOIN submissions s ON s.hash = a.hash;
