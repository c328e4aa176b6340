"""The API's read side: what PostgreSQL (as the sink materialized it) says of submissions, the
minerboard and the weights. Every query is parameterized."""

from __future__ import annotations

from typing import Any, Protocol

import psycopg
from psycopg.rows import class_row, dict_row
from psycopg_pool import ConnectionPool

from api.board import Board
from api.exceptions import StoreUnavailableError
from api.models import Details, MinerboardEntry, RecentEntry, Score, SubmissionDetails, Weights

# A submission's entry: its row, the content hash of its score; a rejected one is FAILED with
# the rejection as its notes.
_ENTRY = """
SELECT s.hash, s.status, s.score, s.content_hash, s.notes, s.manifest,
       (SELECT jsonb_build_object(
                   'verdict', a.verdict, 'scored_total', a.scored_total,
                   'audited_total', a.audited_total, 'tolerance', a.tolerance,
                   'auditor', a.auditor, 'reason', a.reason)
          FROM audits a
         WHERE a.hash = s.hash AND a.scoring_version = s.scoring_version
         ORDER BY a.audited_at DESC, a.event_id DESC LIMIT 1) AS audit
  FROM submission_standing s
 WHERE s.hash = %(hash)s
UNION ALL
SELECT * FROM (
    SELECT r.hash, 'FAILED', NULL::double precision, NULL, r.code || ': ' || r.message,
           NULL::jsonb, NULL::jsonb
      FROM rejections r
     WHERE r.hash = %(hash)s
       AND NOT EXISTS (SELECT 1 FROM submission_standing WHERE hash = %(hash)s)
     ORDER BY r.time DESC LIMIT 1
) rejected
"""
_MINERBOARD = """
SELECT m.uid, m.hotkey, m.hash, m.block,
       coalesce(s.status, CASE WHEN EXISTS (SELECT 1 FROM rejections r WHERE r.hash = m.hash)
                               THEN 'FAILED' END) AS status,
       s.repo_namespace, s.repo_name, s.content_hash AS safetensors_hash,
       s.score AS total_score, m.updated_at AS timestamp, s.notes
  FROM minerboard m
  LEFT JOIN submission_standing s ON s.hash = m.hash
 ORDER BY m.uid
"""
_RECENT = """
SELECT * FROM (
    SELECT s.hash, s.status, s.repo_name, s.repo_namespace, s.content_hash AS safetensors_hash,
           s.score AS total_score, s.updated_at AS timestamp, s.notes
      FROM submission_standing s
    UNION ALL
    SELECT r.hash, 'FAILED', r.repo_name, r.repo_namespace, NULL, NULL, r.written_at,
           r.code || ': ' || r.message
      FROM rejections r
     WHERE r.source_type <> 'miner.registered'
) e
ORDER BY timestamp DESC, hash
LIMIT %(limit)s
"""
_LATEST_VECTOR = """
SELECT validator, epoch, block FROM weights
 WHERE %(validator)s::text IS NULL OR validator = %(validator)s
 ORDER BY position DESC NULLS LAST, computed_at DESC, epoch DESC LIMIT 1
"""
_VECTOR_ENTRIES = """
SELECT uid, weight, hotkey, hash, repo, status, score, win_rate, invalid
  FROM weight_entries WHERE validator = %(validator)s AND epoch = %(epoch)s ORDER BY uid
"""


class Store(Protocol):
    """What the routes read (PostgreSQL in production, an in-memory double in tests)."""

    def start(self) -> None: ...

    def close(self) -> None: ...

    def entry(self, hash_: str) -> SubmissionDetails | None: ...

    def minerboard(self) -> list[MinerboardEntry]: ...

    def recent_entries(self, limit: int) -> list[RecentEntry]: ...

    def latest_weights(self, validator: str | None) -> Weights | None: ...


class PostgresStore:
    """The store over a connection pool (opened with the app, closed with it)."""

    def __init__(self, conninfo: str, *, min_size: int = 1, max_size: int = 8) -> None:
        self._pool = ConnectionPool(conninfo, min_size=min_size, max_size=max_size, open=False,
                                    kwargs={"autocommit": True})

    def start(self) -> None:
        self._pool.open(wait=False)

    def close(self) -> None:
        self._pool.close()

    def entry(self, hash_: str) -> SubmissionDetails | None:
        rows = self._fetch(_ENTRY, {"hash": hash_})
        if not rows:
            return None
        h, status, score, content_hash, notes, manifest, audit = rows[0]
        details = Details(safetensors_hash=content_hash, manifest=manifest, audit=audit)
        return SubmissionDetails(hash=h, status=status, score=Score(total_score=score),
                                 details=details, notes=notes)

    def minerboard(self) -> list[MinerboardEntry]:
        return self._fetch(_MINERBOARD, {}, MinerboardEntry)

    def recent_entries(self, limit: int) -> list[RecentEntry]:
        return self._fetch(_RECENT, {"limit": limit}, RecentEntry)

    def latest_weights(self, validator: str | None) -> Weights | None:
        found = self._fetch(_LATEST_VECTOR, {"validator": validator}, None, dict_row)
        if not found:
            return None
        head = found[0]
        entries = self._fetch(_VECTOR_ENTRIES, head, None, dict_row)
        return Weights(**head, uids=[e["uid"] for e in entries],
                       weights=[e["weight"] for e in entries], entries=entries)

    @property
    def board(self) -> Board:
        """The leaderboard pages' queries over this pool."""
        return Board(self.rows)

    def rows(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """``query``'s rows as dicts."""
        return self._fetch(query, params, None, dict_row)

    def _fetch(self, query: str, params: dict, model: type | None = None,
               rows: object = None) -> list:
        factory = class_row(model) if model is not None else rows
        try:
            with self._pool.connection(timeout=10) as conn:
                cur = conn.cursor(row_factory=factory) if factory else conn.cursor()
                with cur:
                    return cur.execute(query, params).fetchall()
        except (psycopg.Error, TimeoutError) as exc:
            raise StoreUnavailableError(f"PostgreSQL did not answer: {exc}") from exc
