"""The read side: the leaderboard and progress queries, rows read as pydantic models."""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from pydantic import BaseModel

from schemas.events import FINAL_RANK, STATUS_RANK
from sinks.tables import TABLES

# The leaderboard's order: COMPLETED (by score), then what is in progress, furthest first, then
# FAILED, then rejections.
_IN_PROGRESS = sorted((s for s, r in STATUS_RANK.items() if r < FINAL_RANK),
                      key=STATUS_RANK.__getitem__, reverse=True)
LEADERBOARD_STATUSES = ("COMPLETED", *_IN_PROGRESS, "FAILED", "REJECTED")

_LEADERBOARD = sql.SQL("""
SELECT hash, uid, hotkey, repo, status, score, notes, block, updated_at FROM (
    SELECT hash, uid, hotkey, repo_namespace || '/' || repo_name AS repo, status, score,
           notes, block, updated_at
      FROM submissions
    UNION ALL
    SELECT r.hash, r.uid, r.hotkey, r.repo_namespace || '/' || r.repo_name, 'REJECTED', NULL,
           r.code || ': ' || r.message, r.block, r.written_at
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
