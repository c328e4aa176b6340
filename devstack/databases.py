"""Databases of their own on one PostgreSQL server: created migrated, labelled, listed, dropped.

The demo gives each run a database of its own on the stack's server (``CREATE DATABASE`` needs
the ``CREATEDB`` privilege, which the dev stack's role has). A label, stored as the database's
comment, says what the database belongs to, so that whoever lists them later knows which ones
it may drop and what else (topics) went with them.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from devstack.exceptions import DevStackError
from sinks.migrate import apply_migrations


def with_database(url: str, dbname: str) -> str:
    """``url`` (a ``postgresql://`` URL or a libpq ``key=value`` string) on database
    ``dbname``."""
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        return urlunsplit(parts._replace(path=f"/{quote(dbname)}"))
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


def without_password(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for display."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") or parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def create_database(url: str, dbname: str, *, label: str) -> tuple[str, list[str]]:
    """Create ``dbname`` on the server of ``url`` with ``label`` as its comment, apply the
    sink's migrations to it; return its URL and the migrations applied."""
    name = sql.Identifier(dbname)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(name, sql.Literal(label)))
    except psycopg.Error as exc:
        raise DevStackError(
            f"cannot create the database {dbname} on {without_password(url)}: "
            f"{str(exc).strip()} (the role needs the CREATEDB privilege)"
        ) from exc
    own = with_database(url, dbname)
    return own, apply_migrations(own)


def labelled_databases(url: str, label_prefix: str) -> dict[str, str]:
    """Database name → label of every database on the server whose label starts with
    ``label_prefix``."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
            " WHERE starts_with(coalesce(shobj_description(oid, 'pg_database'), ''), %s)",
            (label_prefix,),
        ).fetchall()
    return {str(name): str(label) for name, label in rows}


def drop_database_unless_used(url: str, dbname: str) -> bool:
    """Drop ``dbname`` when no session is connected to it; False (and nothing dropped) when
    one is."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))
    except psycopg.errors.ObjectInUse:
        return False
    return True
