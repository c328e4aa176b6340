"""`speechstream sink run | rebuild`: materialize the topics into PostgreSQL."""

from __future__ import annotations

import argparse
import sys
import uuid

import psycopg
from prometheus_client import CollectorRegistry
from psycopg import sql

from cli.serve import add_metrics_port, serve, with_metrics_port
from sinks.metrics import SinkMetrics
from sinks.migrate import apply_migrations
from sinks.postgres import PostgresSink
from sinks.runner import SinkService
from sinks.tables import TABLES
from speechstream.exceptions import SpeechstreamError
from speechstream.service import run_service, stop_on_signals
from speechstream.settings import DatabaseSettings, KafkaSettings, SinkSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sink`` command group."""
    sink = subparsers.add_parser("sink", help="materialize the topics into PostgreSQL")
    sub = sink.add_subparsers(dest="sink_command", required=True)
    run = sub.add_parser(
        "run", help="consume (read_committed) and write batches until stopped",
        description="Apply migrations, then consume the registry's topics and write them in "
        "batches (COPY + one merge per table, idempotent), committing offsets after each "
        "database transaction. A database or broker that is away (a restart) is waited for: "
        "the batch, or its offset commit, is tried again with backoff while /health says "
        "'degraded'; only a fatal error (credentials, a missing table) ends it. Settings: "
        "SPEECHSTREAM_SINK_GROUP_ID, _INSTANCE_ID (static group membership, default "
        "sink-<hostname>: a restarted sink takes its partitions back at once; one id per sink "
        "of a group), _SESSION_TIMEOUT_MS (how long a stopped sink's partitions wait for it, "
        "default 45000), _BATCH_SIZE, _BATCH_TIMEOUT_S, _RETRY_BACKOFF_S (first wait, 0.5), "
        "_RETRY_BACKOFF_MAX_S (longest wait, 10), _METRICS_PORT (serves /metrics and /health).",
    )
    add_metrics_port(run)
    run.set_defaults(func=_run)
    rebuild = sub.add_parser(
        "rebuild", help="empty the tables and replay every topic from the start, then exit",
        description="Truncate the materialized tables and replay every topic from its first "
        "offset with a fresh consumer group until caught up. The result equals what the "
        "running sink built: the log is the source of truth.",
    )
    rebuild.set_defaults(func=_rebuild)


def _run(args: argparse.Namespace) -> int:
    database, settings = DatabaseSettings(), with_metrics_port(SinkSettings(), args)
    try:
        apply_migrations(database.conninfo)
    except SpeechstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    registry = CollectorRegistry()
    service = SinkService(KafkaSettings(), settings, PostgresSink(database.conninfo),
                          metrics=SinkMetrics.create(registry))
    return serve(service, registry, settings.metrics_port)


def _rebuild(args: argparse.Namespace) -> int:
    database = DatabaseSettings()
    settings = SinkSettings()
    settings = settings.model_copy(
        update={"group_id": f"{settings.group_id}-rebuild-{uuid.uuid4().hex[:8]}"}
    )
    registry = CollectorRegistry()
    service = SinkService(KafkaSettings(), settings, PostgresSink(database.conninfo),
                          metrics=SinkMetrics.create(registry), until_caught_up=True)
    try:
        apply_migrations(database.conninfo)
        with psycopg.connect(database.conninfo) as conn:
            conn.execute(sql.SQL("TRUNCATE {}").format(
                sql.SQL(", ").join(sql.Identifier(t.name) for t in TABLES)))
        run_service(service, stop=stop_on_signals(), registry=registry)
    except (SpeechstreamError, psycopg.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"rebuilt from {service.written} events")
    return 0
