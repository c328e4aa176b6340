"""`speechstream streams worker`: the faust-streaming validation worker."""

from __future__ import annotations

import argparse

from speechstream.settings import KafkaSettings, StreamsSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``streams`` command group."""
    streams = subparsers.add_parser("streams", help="validate and route events (Faust)")
    sub = streams.add_subparsers(dest="streams_command", required=True)
    worker = sub.add_parser(
        "worker", help="run one validation worker until SIGTERM",
        description="Validate registrations and submissions (schema, signature, hash, "
        "registration, rate limit, duplicates), route valid ones to evaluation.requests with "
        "QUEUED, rejections to submissions.rejected, undecodable records to deadletter. "
        "Settings: SPEECHSTREAM_STREAMS_APP_ID, _RATE_LIMIT_BLOCKS, _DATA_DIR, _WEB_ENABLED, "
        "_WEB_PORT. The registry's topics must exist (`speechstream topics create`).",
    )
    worker.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus metrics on this port")
    worker.set_defaults(func=_worker)


def _worker(args: argparse.Namespace) -> int:
    from streams.worker import run_worker

    run_worker(KafkaSettings(), StreamsSettings(), metrics_port=args.metrics_port)
    return 0
