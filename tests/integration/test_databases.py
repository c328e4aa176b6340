"""The test databases' drop: sessions of the role on the database are ended, no FORCE needed."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from devstack.databases import with_database
from tests.integration.databases import drop_database

pytestmark = pytest.mark.integration


def _exists(database_url: str, name: str) -> bool:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    return row is not None


def test_a_database_with_open_sessions_is_dropped_and_its_sessions_ended(
        database_url: str) -> None:
    name = f"speechstream_drop_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    idle = psycopg.connect(with_database(database_url, name))
    idle.execute("CREATE TABLE t (a int)")  # left open in its transaction
    try:
        drop_database(database_url, name, timeout_s=10)
        assert not _exists(database_url, name)
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")
    finally:
        idle.close()
    drop_database(database_url, name)  # a second drop finds nothing: no error
