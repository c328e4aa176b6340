"""The benchmarks' databases: a fresh migrated one per run, and what the sink wrote into it."""

from __future__ import annotations

import psycopg

from sinks.migrate import apply_migrations


def fresh_database(admin_url: str, name: str) -> str:
    """A new, migrated database ``name`` on the server of ``admin_url`` (dropped first if it
    exists); its connection string."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {}").format(
            psycopg.sql.Identifier(name)))
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    apply_migrations(url)
    return url


def sink_rows_per_s(conninfo: str) -> tuple[int, float]:
    """Rows the sink has written (miners, submissions, statuses) and their rate over the span
    of their write times."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM max(t) - min(t)) FROM ("
            " SELECT written_at AS t FROM miners UNION ALL"
            " SELECT created_at FROM submissions UNION ALL"
            " SELECT written_at FROM status_events) x"
        ).fetchone()
    assert row is not None
    rows, span = int(row[0]), float(row[1] or 0.0)
    return rows, rows / max(span, 1e-9)
