"""Versioned SQL migrations (sinks/migrations/NNNN_name.sql), each applied once and recorded."""

from __future__ import annotations

from importlib import resources

import psycopg
from psycopg import sql

from sinks.exceptions import MigrationError

_LOCK_ID = 0x5EEC5 << 8  # advisory lock: two processes never migrate at once

_CREATE_LEDGER = sql.SQL(
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version text PRIMARY KEY,"
    " applied_at timestamptz NOT NULL DEFAULT now())"
)


def available_migrations() -> list[tuple[str, str]]:
    """``(version, sql text)`` of every migration shipped with the package, in order."""
    files = resources.files("sinks") / "migrations"
    found = sorted(f for f in files.iterdir() if f.name.endswith(".sql"))
    return [(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in found]


def applied_migrations(conninfo: str) -> list[str]:
    """Versions already applied to the database (empty when none are)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return []
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        return [row[0] for row in rows]


def apply_migrations(conninfo: str) -> list[str]:
    """Apply every migration not applied yet, each in its own transaction; return them."""
    applied_now: list[str] = []
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
            try:
                conn.execute(_CREATE_LEDGER)
                done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
                for version, text in available_migrations():
                    if version in done:
                        continue
                    with conn.transaction():
                        conn.execute(text.encode("utf-8"))
                        conn.execute(
                            "INSERT INTO schema_migrations (version) VALUES (%s)", (version,)
                        )
                    applied_now.append(version)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    except psycopg.Error as exc:
        raise MigrationError(f"migration failed after {applied_now or 'none'}: {exc}") from exc
    return applied_now
