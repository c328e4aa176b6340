"""Dropping a test database on the session's server, as a role that is not a superuser.

``DROP DATABASE … WITH (FORCE)`` is refused to such a role while an autovacuum worker is
on the database: PostgreSQL (15 here) asks to be a member of the role of every process it
would end, and an autovacuum worker has none ("must be a member of the role whose process is
being terminated or member of pg_signal_backend"). A test that wrote rows gets one now and
then. So the drop ends this role's own sessions on the database itself and then drops
without FORCE: a plain ``DROP DATABASE`` ends autovacuum workers by itself.
"""

from __future__ import annotations

import time

import psycopg
from psycopg import sql


def drop_database(database_url: str, name: str, *, timeout_s: float = 60.0) -> None:
    """Drop database ``name`` (if it exists), ending this role's sessions on it first.

    A session that reconnects in between (a service still stopping) is ended again, until
    ``timeout_s``; then the last ``ObjectInUse`` is raised.
    """
    drop = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND usename = current_user AND pid <> pg_backend_pid()",
                [name],
            )
            try:
                conn.execute(drop)
                return
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
