"""Per-test fixtures over the session's broker and database: unique topics, group, database.

- ``kafka_settings``: ``KafkaSettings`` for the session broker with a topic prefix unique to the
  test; every registry topic exists under it (deleted again after the test).
- ``group_id``: a consumer group id unique to the test.
- ``db_conninfo``: a database of its own for the test, created from a template that has the
  migrations applied (``CREATE DATABASE … TEMPLATE``, ~0.1 s) and dropped after the test. With
  ``DATABASE_URL`` from the environment, its role needs ``CREATEDB``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from devstack.databases import with_database
from schemas.topics import changelog_specs
from sinks.migrate import apply_migrations
from speechstream.kafka.admin import create_topics, delete_topics
from speechstream.settings import KafkaSettings
from streams.settings import StreamsSettings
from tests.integration.databases import drop_database
from tests.integration.pipeline import Pipeline


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture
def kafka_settings(bootstrap_servers: str) -> Iterator[KafkaSettings]:
    """Settings with a fresh topic prefix (``t<hex>.``); the registry's topics exist under it."""
    settings = KafkaSettings().model_copy(
        update={"bootstrap_servers": bootstrap_servers, "topic_prefix": f"{_unique('t')}."}
    )
    create_topics(settings)
    yield settings
    changelogs = [settings.topics.name(spec) for spec in changelog_specs(StreamsSettings().app_id)]
    delete_topics(settings, [name for name, _ in settings.topics.all()] + changelogs)


@pytest.fixture
def group_id() -> str:
    """A consumer group id no other test uses."""
    return _unique("test-group-")


@pytest.fixture(scope="session")
def template_database(database_url: str) -> Iterator[str]:
    """A migrated database that each test's database is copied from (nobody connects to it)."""
    name = _unique("speechstream_tmpl_")
    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege as exc:
            pytest.fail(
                f"db_conninfo creates a database per test; the role of DATABASE_URL may not: "
                f"{exc} (grant it CREATEDB, or unset DATABASE_URL to use a local server)"
            )
    apply_migrations(with_database(database_url, name))
    yield name
    drop_database(database_url, name)


@pytest.fixture
def db_conninfo(database_url: str, template_database: str) -> Iterator[str]:
    """The conninfo of a fresh, migrated database for this test only (dropped afterwards)."""
    name = _unique("speechstream_test_")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_database)
            )
        )
    yield with_database(database_url, name)
    drop_database(database_url, name)


@pytest.fixture
def pipeline(kafka_settings: KafkaSettings, db_conninfo: str, tmp_path) -> Iterator[Pipeline]:
    """Services against this test's topics and database, stopped after the test."""
    pipe = Pipeline(kafka_settings, db_conninfo, tmp_path)
    yield pipe
    pipe.stop()
