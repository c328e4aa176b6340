"""`speechstream streams worker`: the faust-streaming intake worker (validation and routing)."""

from __future__ import annotations

import argparse

from prometheus_client import CollectorRegistry

from speechstream.settings import KafkaSettings, StreamsSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``streams`` command group."""
    streams = subparsers.add_parser("streams", help="validate and route events (Faust)")
    sub = streams.add_subparsers(dest="streams_command", required=True)
    worker = sub.add_parser(
        "worker", help="run one intake worker until SIGTERM",
        description="The intake worker: validate registrations and submissions (schema, "
        "signature, hash, registration, rate limit, duplicates), route valid ones to "
        "evaluation.requests with QUEUED, rejections to submissions.rejected, undecodable "
        "records to deadletter. Settings: SPEECHSTREAM_STREAMS_APP_ID (default "
        "speechstream-intake: its consumer group and changelogs), _RATE_LIMIT_BLOCKS, "
        "_DATA_DIR, _WEB_ENABLED, _WEB_PORT, _METRICS_PORT. The registry's topics must exist "
        "(`speechstream topics create`).",
    )
    worker.add_argument("--metrics-port", type=int, default=None,
                        help="serve /metrics and /health on this port (default: settings, none)")
    worker.set_defaults(func=_worker)


def _worker(args: argparse.Namespace) -> int:
    from cli.serve import serve
    from streams.metrics import StreamsMetrics
    from streams.worker import IntakeWorker

    settings = StreamsSettings()
    if args.metrics_port is not None:
        settings = settings.model_copy(update={"metrics_port": args.metrics_port})
    registry = CollectorRegistry()
    worker = IntakeWorker(KafkaSettings(), settings, StreamsMetrics.create(registry))
    return serve(worker, registry, settings.metrics_port)
