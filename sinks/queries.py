"""The read side: the leaderboard and progress queries, rows read as pydantic models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from pydantic import BaseModel

from schemas.fields import FINAL_RANK, STATUS_RANK
from sinks.tables import TABLES

# The leaderboard's order: COMPLETED (by score), then what is in progress, furthest first, then
# FAILED, then rejections.
_IN_PROGRESS = sorted((s for s, r in STATUS_RANK.items() if r < FINAL_RANK),
                      key=STATUS_RANK.__getitem__, reverse=True)
LEADERBOARD_STATUSES = ("COMPLETED", *_IN_PROGRESS, "FAILED", "REJECTED")

_LEADERBOARD = sql.SQL("""
SELECT hash, uid, hotkey, repo, status, score, notes, block, updated_at, scoring_version,
       manifest, audit FROM (
    SELECT s.hash, s.uid, s.hotkey, s.repo_namespace || '/' || s.repo_name AS repo, s.status,
           s.score, s.notes, s.block, s.updated_at, s.scoring_version, s.manifest,
           a.audit
      FROM submission_standing s
      LEFT JOIN LATERAL (
          SELECT jsonb_build_object(
                     'verdict', verdict, 'scored_total', scored_total,
                     'audited_total', audited_total, 'tolerance', tolerance,
                     'auditor', auditor, 'evaluator', evaluator, 'reason', reason,
                     'differences', differences) AS audit
            FROM audits
           WHERE audits.hash = s.hash AND audits.scoring_version = s.scoring_version
           ORDER BY audited_at DESC, event_id DESC
           LIMIT 1
      ) a ON true
    UNION ALL
    SELECT r.hash, r.uid, r.hotkey, r.repo_namespace || '/' || r.repo_name, 'REJECTED', NULL,
           r.code || ': ' || r.message, r.block, r.written_at, NULL, NULL, NULL
      FROM rejections r
) rows
ORDER BY array_position({statuses}, status), score DESC NULLS LAST, block, repo, hash
""").format(statuses=sql.Literal(list(LEADERBOARD_STATUSES)))


class LeaderboardRow(BaseModel):
    """One submission (or rejected submission) with its status, score and notes."""

    hash: str | None
    uid: int | None
    hotkey: str | None
    repo: str | None
    status: str
    score: float | None
    notes: str | None
    block: int | None
    updated_at: datetime
    scoring_version: str | None = None
    manifest: dict[str, Any] | None = None
    """What reproduces the score (scores written before manifests have none)."""
    audit: dict[str, Any] | None = None
    """The latest audit of the score: verdict, both totals, tolerance, auditor, reason."""

    @property
    def audit_note(self) -> str | None:
        """A line for the notes when the latest audit disagrees or could not re-score."""
        if not self.audit or self.audit.get("verdict") == "agree":
            return None
        a = self.audit
        if a.get("verdict") == "unavailable":
            return f"audit unavailable: {a.get('reason')}"
        audited = a.get("audited_total")
        shown = f"{audited:.6f}" if isinstance(audited, float) else str(audited)
        return (f"AUDIT DISAGREES: {a.get('auditor')} scored {shown} "
                f"(tolerance {a.get('tolerance')}; {a.get('reason') or 'no detail'})")


def leaderboard(conn: psycopg.Connection) -> list[LeaderboardRow]:
    """Every submission by status (COMPLETED by score first), then every rejection."""
    with conn.cursor(row_factory=class_row(LeaderboardRow)) as cur:
        return cur.execute(_LEADERBOARD).fetchall()


def registered_hotkeys(conn: psycopg.Connection, hotkeys: list[str]) -> list[str]:
    """Which of ``hotkeys`` the registry holds."""
    rows = conn.execute("SELECT hotkey FROM miners WHERE hotkey = ANY(%s)", (hotkeys,))
    return [r[0] for r in rows.fetchall()]


def counts(conn: psycopg.Connection) -> dict[str, int]:
    """Rows per materialized table (for progress displays and checks)."""
    return {
        table.name: conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table.name))
        ).fetchone()[0]
        for table in TABLES
    }


class AuditSummaryRow(BaseModel):
    """One evaluator's audits: how many agreed, disagreed, or could not be re-scored."""

    evaluator: str
    audits: int
    agree: int
    disagree: int
    unavailable: int
    disagree_rate: float | None
    """Disagreements over the audits that could be judged (agree + disagree)."""


_AUDIT_SUMMARY = """
SELECT evaluator, count(*)::int AS audits,
       count(*) FILTER (WHERE verdict = 'agree')::int AS agree,
       count(*) FILTER (WHERE verdict = 'disagree')::int AS disagree,
       count(*) FILTER (WHERE verdict = 'unavailable')::int AS unavailable,
       (count(*) FILTER (WHERE verdict = 'disagree'))::float8
           / nullif(count(*) FILTER (WHERE verdict IN ('agree', 'disagree')), 0) AS disagree_rate
  FROM audits
 GROUP BY evaluator
 ORDER BY disagree_rate DESC NULLS LAST, evaluator
"""


def audit_summary(conn: psycopg.Connection) -> list[AuditSummaryRow]:
    """The audits per audited evaluator, the most disagreeing first."""
    with conn.cursor(row_factory=class_row(AuditSummaryRow)) as cur:
        return cur.execute(_AUDIT_SUMMARY).fetchall()


class UidSubmission(BaseModel):
    """A held uid and its holder's latest submission, as it stands (what a validator weighs)."""

    uid: int
    hotkey: str
    hash: str | None
    repo: str | None
    block: int | None
    status: str | None
    score: float | None
    content_hash: str | None
    withdrawn: str | None


# Each hotkey's miners row is its latest registry event; a uid is held by the earliest of the
# hotkeys whose row names it; its submission is the holder's latest by (block, hash)
# (speechstream/ledger.py, the same rules).
_UID_SUBMISSIONS = """
WITH holders AS (
    SELECT DISTINCT ON (uid) uid, hotkey FROM miners
     WHERE uid IS NOT NULL
     ORDER BY uid, block, event_id COLLATE "C", hotkey COLLATE "C"
)
SELECT h.uid, h.hotkey, s.hash, s.repo_namespace || '/' || s.repo_name AS repo, s.block,
       s.status, s.score, s.content_hash, s.withdrawn
  FROM holders h
  LEFT JOIN LATERAL (
      SELECT * FROM submission_standing s WHERE s.hotkey = h.hotkey
       ORDER BY s.block DESC, s.hash COLLATE "C" DESC LIMIT 1
  ) s ON true
 ORDER BY h.uid
"""


def uid_submissions(conn: psycopg.Connection) -> list[UidSubmission]:
    """Every held uid with its holder's latest submission and how it stands, in uid order."""
    with conn.cursor(row_factory=class_row(UidSubmission)) as cur:
        return cur.execute(_UID_SUBMISSIONS).fetchall()
