"""The read side: the leaderboard and progress queries, rows read as pydantic models."""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg.rows import class_row
from pydantic import BaseModel

_STATUS_ORDER = """CASE status WHEN 'COMPLETED' THEN 0 WHEN 'RUNNING' THEN 1
    WHEN 'PRECHECK' THEN 2 WHEN 'QUEUED' THEN 3 WHEN 'FAILED' THEN 4 ELSE 5 END"""

_LEADERBOARD = """
SELECT hash, uid, hotkey, repo, status, score, notes, block, updated_at FROM (
    SELECT hash, uid, hotkey, repo_namespace || '/' || repo_name AS repo, status, score,
           notes, block, updated_at
      FROM submissions
    UNION ALL
    SELECT r.hash, r.uid, r.hotkey, r.repo_namespace || '/' || r.repo_name, 'REJECTED', NULL,
           r.code || ': ' || r.message, r.block, r.written_at
      FROM rejections r
) rows
ORDER BY """ + _STATUS_ORDER + """, score DESC NULLS LAST, block, repo, hash
"""


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


def leaderboard(conn: psycopg.Connection) -> list[LeaderboardRow]:
    """Every submission by status (COMPLETED by score first), then every rejection."""
    with conn.cursor(row_factory=class_row(LeaderboardRow)) as cur:
        return cur.execute(_LEADERBOARD).fetchall()


def registered_hotkeys(conn: psycopg.Connection, hotkeys: list[str]) -> list[str]:
    """Which of ``hotkeys`` the registry holds."""
    rows = conn.execute("SELECT hotkey FROM miners WHERE hotkey = ANY(%s)", (hotkeys,))
    return [r[0] for r in rows.fetchall()]


def counts(conn: psycopg.Connection) -> dict[str, int]:
    """Rows per table (for progress displays and checks)."""
    tables = ("miners", "submissions", "status_events", "scores", "sample_results",
              "rejections", "dead_letters")
    return {
        t: conn.execute(
            psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(t))
        ).fetchone()[0]
        for t in tables
    }
