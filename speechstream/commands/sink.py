"""`speechstream sink run | rebuild`: materialize the topics into PostgreSQL."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import uuid

import psycopg

from schemas.exceptions import SpeechstreamError
from sinks.migrate import apply_migrations
from sinks.runner import run_sink
from speechstream.settings import DatabaseSettings, KafkaSettings, SinkSettings

_TABLES = ("miners", "submissions", "status_events", "scores", "sample_results", "rejections",
           "dead_letters")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sink`` command group."""
    sink = subparsers.add_parser("sink", help="materialize the topics into PostgreSQL")
    sub = sink.add_subparsers(dest="sink_command", required=True)
    run = sub.add_parser(
        "run", help="consume (read_committed) and write batches until stopped",
        description="Apply migrations, then consume the registry's topics and write them in "
        "batches (COPY + one merge per table, idempotent), committing offsets after each "
        "database transaction. Settings: SPEECHSTREAM_SINK_GROUP_ID, _BATCH_SIZE, "
        "_BATCH_TIMEOUT_S, _METRICS_PORT.",
    )
    run.set_defaults(func=_run)
    rebuild = sub.add_parser(
        "rebuild", help="empty the tables and replay every topic from the start, then exit",
        description="Truncate the materialized tables and replay every topic from its first "
        "offset with a fresh consumer group until caught up. The result equals what the "
        "running sink built: the log is the source of truth.",
    )
    rebuild.set_defaults(func=_rebuild)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    database = DatabaseSettings()
    try:
        apply_migrations(database.conninfo)
        run_sink(KafkaSettings(), database, SinkSettings(), stop=_stop_on_signals())
    except SpeechstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    database = DatabaseSettings()
    settings = SinkSettings()
    settings = settings.model_copy(
        update={"group_id": f"{settings.group_id}-rebuild-{uuid.uuid4().hex[:8]}"}
    )
    try:
        apply_migrations(database.conninfo)
        with psycopg.connect(database.conninfo) as conn:
            conn.execute(psycopg.sql.SQL("TRUNCATE {}").format(
                psycopg.sql.SQL(", ").join(map(psycopg.sql.Identifier, _TABLES))))
        n = run_sink(KafkaSettings(), database, settings, stop=_stop_on_signals(),
                     until_caught_up=True)
    except SpeechstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"rebuilt from {n} events")
    return 0
