"""`speechstream sink run | rebuild`: materialize the topics into PostgreSQL."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from prometheus_client import CollectorRegistry
from tqdm import tqdm

from cli.exceptions import EXIT_INTERRUPTED, CommandError
from cli.serve import add_metrics_port, serve, with_metrics_port
from sinks.compare import format_table
from sinks.exceptions import RebuildInterrupted
from sinks.metrics import SinkMetrics
from sinks.migrate import apply_migrations
from sinks.postgres import PostgresWriter
from sinks.rebuild import Rebuild
from sinks.runner import SinkService, tune_interpreter
from sinks.settings import SinkSettings
from speechstream.exceptions import SpeechstreamError
from speechstream.service import stop_on_signals
from speechstream.settings import DatabaseSettings, KafkaSettings
from speechstream.trust import service_trust

log = logging.getLogger("speechstream.sink")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sink`` command group."""
    sink = subparsers.add_parser("sink", help="materialize the topics into PostgreSQL")
    sub = sink.add_subparsers(dest="sink_command", required=True)
    run = sub.add_parser(
        "run", help="consume (read_committed) and write batches until stopped",
        description="Apply migrations, then consume the registry's topics and write them in "
        "batches (COPY + one merge per table, idempotent), committing offsets after each "
        "database transaction; the next batch is consumed and decoded while one is written. "
        "A database or broker that is away (a restart) is waited for: the batch, or its "
        "offset commit, is tried again with backoff while /health says 'degraded'; only a "
        "fatal error (credentials, a missing table) ends it. Settings: "
        "SPEECHSTREAM_SINK_GROUP_ID, _INSTANCE_ID (static group membership, default "
        "sink-<hostname>: a restarted sink takes its partitions back at once; one id per sink "
        "of a group), _SESSION_TIMEOUT_MS (how long a stopped sink's partitions wait for it, "
        "default 45000), _BATCH_SIZE (20000), _BATCH_TIMEOUT_S, _RETRY_BACKOFF_S (first "
        "wait, 0.5), _RETRY_BACKOFF_MAX_S (longest wait, 10), _METRICS_PORT (serves /metrics "
        "and /health), _KEY_FILE (its signing key; with a root of trust, "
        "SPEECHSTREAM_TRUST_OPERATOR_KEY, a record whose signer may not say it becomes a "
        "dead letter, never a row).",
    )
    add_metrics_port(run)
    run.set_defaults(func=_run)
    rebuild = sub.add_parser(
        "rebuild", help="replay every topic into a fresh schema, then swap it in (or --verify)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Replay every topic from its first offset, with a fresh consumer group
(<SPEECHSTREAM_SINK_GROUP_ID>-rebuild-<hex>), into a fresh PostgreSQL schema
rebuild_<hex> (the migrations applied there), then swap it in for the live schema in one
transaction: the live tables are locked against writes (readers go on), the rebuild catches
up once more, the live schema is renamed away, the rebuilt one takes its name, and the old
one is dropped. The live sink keeps running throughout; its batches wait for the swap and
then go into the new tables (writing an event twice changes nothing). Progress goes to
stderr, the result to stdout. A rebuild that fails or is stopped (Ctrl-C) before the swap
drops its schema and leaves the live tables as they were.

Exit status: 0 rebuilt and swapped in (with --verify: every table equal), 1 error (with
--verify: some table differs), 2 error with --verify, 130 stopped.""",
    )
    rebuild.add_argument(
        "--verify", action="store_true",
        help="do not swap: compare every table with the live one (row count and an md5 of "
        "the columns written from events, in key order; write-time columns left out), print "
        "'table live_rows rebuilt_rows equal|DIFFERS' per table, drop the rebuilt schema. "
        "The live tables are a moving target while the live sink writes: events it has not "
        "written yet show as differences, so verify a quiet pipeline (or run it again)",
    )
    rebuild.add_argument("--json", action="store_true",
                         help="with --verify: print the comparison as one JSON object")
    rebuild.add_argument(
        "--lock-timeout", type=float, default=10.0, metavar="SECONDS",
        help="how long the swap waits for a lock on the live tables before it rolls back and "
        "tries again (3 tries; default 10)",
    )
    rebuild.set_defaults(func=_rebuild)


def _run(args: argparse.Namespace) -> int:
    database, settings = DatabaseSettings(), with_metrics_port(SinkSettings(), args)
    apply_migrations(database.conninfo)
    kafka = KafkaSettings()
    with service_trust(kafka, settings, role="sink", name="sink", logger=log) as trust:
        registry = CollectorRegistry()
        writer = PostgresWriter(database.conninfo,
                                audio_keep_per_uid=settings.audio_keep_per_uid)
        service = SinkService(kafka, settings, writer,
                              metrics=SinkMetrics.create(registry),
                              verify=trust.verify, signer=trust.signer)
        tune_interpreter()
        return serve(service, registry, settings.metrics_port)


def _rebuild(args: argparse.Namespace) -> int:
    if args.json and not args.verify:
        raise CommandError("--json goes with --verify")
    failed = 2 if args.verify else 1
    stop = stop_on_signals()
    # A bar on a terminal; in a log, a line at most every 10 s.
    bar = tqdm(desc="rebuild", unit=" events", file=sys.stderr, mininterval=10.0,
               bar_format=None if sys.stderr.isatty() else "rebuild: {n} events written "
               "({rate_fmt})\n")
    if sys.stderr.isatty():
        bar.mininterval = 1.0
    tune_interpreter()
    kafka, settings = KafkaSettings(), SinkSettings()
    try:
        with service_trust(kafka, settings, role="sink", name="sink", logger=log) as trust:
            job = Rebuild(DatabaseSettings().conninfo, kafka, settings, stop=stop,
                          on_written=bar.update,
                          on_phase=lambda line: print(f"rebuild: {line}", file=sys.stderr),
                          lock_timeout_s=args.lock_timeout,
                          verify=trust.verify, signer=trust.signer)
            result = job.verify() if args.verify else job.swap()
    except RebuildInterrupted as exc:
        raise CommandError(str(exc), exit_status=EXIT_INTERRUPTED) from exc
    except SpeechstreamError as exc:
        # 1 is --verify's "a table differs"; its errors exit 2.
        raise CommandError(str(exc), exit_status=failed) from exc
    finally:
        bar.close()
    done = (f"rebuilt {result.events} events into schema {result.schema} in "
            f"{result.seconds:.1f} s ({result.rate:.0f} events/s)")
    if not args.verify:
        print(f"{done}; swapped in as {result.live} (old schema dropped)")
        return 0
    comparisons = result.comparisons or []
    differ = [c.table for c in comparisons if not c.equal]
    if args.json:
        print(json.dumps({"live": result.live, "rebuilt": result.schema,
                          "events": result.events, "equal": not differ,
                          "tables": [c.as_dict() for c in comparisons]}, indent=2))
    else:
        print("\n".join(format_table(comparisons)))
        verdict = (f"{len(differ)} of {len(comparisons)} tables differ: {', '.join(differ)}"
                   if differ else f"all {len(comparisons)} tables equal")
        print(f"{done}; {verdict}; schema {result.schema} dropped")
    return 1 if differ else 0
