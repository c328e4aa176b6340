"""`speechstream streams worker`: the faust-streaming intake worker (validation and routing)."""

from __future__ import annotations

import argparse

from prometheus_client import CollectorRegistry

from cli.serve import add_metrics_port, serve, with_metrics_port
from speechstream.settings import KafkaSettings
from streams.settings import StreamsSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``streams`` command group."""
    streams = subparsers.add_parser("streams", help="validate and route events (Faust)")
    sub = streams.add_subparsers(dest="streams_command", required=True)
    worker = sub.add_parser(
        "worker", help="run one intake worker until SIGTERM",
        description="The intake worker: validate registrations and submissions (schema, "
        "signature, hash, repo name, registration, claimed block against the chain's head, "
        "rate limit, duplicates), route valid ones to evaluation.requests (a routed "
        "request is its submission's QUEUED), rejections to submissions.rejected, "
        "undecodable records to deadletter. Settings: "
        "SPEECHSTREAM_STREAMS_APP_ID (default speechstream-intake: its consumer group and "
        "changelogs), _RATE_LIMIT_BLOCKS, _SCORING_VERSION (v2), _SESSION_TIMEOUT_MS (10000), "
        "_FETCH_MAX_WAIT_MS (100), _DATA_DIR, _WEB_ENABLED, _WEB_PORT, _METRICS_PORT. "
        "The registry's topics must exist (`speechstream topics create`).",
    )
    add_metrics_port(worker)
    worker.set_defaults(func=_worker)
    move = sub.add_parser(
        "move-state", help="move the worker's tables and offsets from another app id",
        description="Copy the changelogs and committed offsets of the intake worker that ran "
        "under --from to the configured app id (SPEECHSTREAM_STREAMS_APP_ID, default "
        "speechstream-intake), so that a worker started under it resumes where the old one "
        "stopped. Stop every intake worker first; refused when the new app id is in use.",
    )
    move.add_argument("--from", dest="old_app", required=True,
                      help="the app id the worker ran under (e.g. speechstream-validator)")
    move.set_defaults(func=_move_state)


def _worker(args: argparse.Namespace) -> int:
    from streams.metrics import StreamsMetrics
    from streams.worker import IntakeWorker

    settings = with_metrics_port(StreamsSettings(), args)
    registry = CollectorRegistry()
    worker = IntakeWorker(KafkaSettings(), settings, StreamsMetrics.create(registry))
    return serve(worker, registry, settings.metrics_port)


def _move_state(args: argparse.Namespace) -> int:
    from streams.move_state import move_state

    new_app = StreamsSettings().app_id
    report = move_state(KafkaSettings(), args.old_app, new_app)
    for topic, n in sorted(report.records.items()):
        print(f"copied {n} records to {topic}")
    print(f"copied {report.offsets} committed offsets: {args.old_app} → {new_app}")
    return 0
