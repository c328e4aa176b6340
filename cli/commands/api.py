"""`speechstream api run`: the REST API the original system's clients call, from PostgreSQL."""

from __future__ import annotations

import argparse
import logging

from prometheus_client import CollectorRegistry

from api.settings import ApiSettings
from cli.exceptions import UsageError
from cli.serve import add_metrics_port, serve, with_metrics_port
from speechstream.exceptions import KeyFileError
from speechstream.settings import DatabaseSettings, KafkaSettings
from speechstream.trust import service_trust

DESCRIPTION = """\
Serve the original system's HTTP surface from PostgreSQL (what the sink materialized):
GET /model_submission_details, POST /ensure_model (admin-key header), POST /minerboard_update
(admin-key header), GET /minerboard, GET /recent_entries, GET /weights, GET /hc, GET /metrics;
and the leaderboard pages: /board, /board/submissions/<hash> (each sample's clips, text,
transcript and scores), /board/miners/<uid>, /board/weights.
ensure_model publishes an unknown submission into the pipeline, attested with the operator's
key. Settings: SPEECHSTREAM_API_HOST, _PORT, _ADMIN_KEY, _OPERATOR_KEY_FILE, _RECENT_ENTRIES,
_METRICS_PORT, _KEY_FILE (its signing key: every event it publishes is signed);
SPEECHSTREAM_TRUST_OPERATOR_KEY; DATABASE_URL; KAFKA_BOOTSTRAP_SERVERS."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``api`` command group."""
    api = subparsers.add_parser("api", help="the REST API (the original clients' surface)")
    sub = api.add_subparsers(dest="api_command", required=True)
    run = sub.add_parser("run", help="serve the API until SIGTERM", description=DESCRIPTION,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=None, help="port (default 8000)")
    add_metrics_port(run)
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from api.publisher import KafkaPublisher
    from api.service import ApiService
    from api.store import PostgresStore
    from speechstream.keys import load_key_file

    settings = with_metrics_port(ApiSettings(), args)
    updates = {"host": args.host, "port": args.port}
    settings = settings.model_copy(update={k: v for k, v in updates.items() if v is not None})
    try:
        operator = (load_key_file(settings.operator_key_file.expanduser())
                    if settings.operator_key_file else None)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from exc
    store = PostgresStore(DatabaseSettings().conninfo, min_size=settings.pool_min_size,
                          max_size=settings.pool_max_size)
    kafka = KafkaSettings()
    with service_trust(kafka, settings, role="api", name="api",
                       logger=logging.getLogger("speechstream.api")) as trust:
        registry = CollectorRegistry()
        service = ApiService(settings, store,
                             KafkaPublisher(kafka, operator, signer=trust.signer), registry)
        print(f"serving on http://{settings.host}:{settings.port}", flush=True)
        return serve(service, registry, settings.metrics_port)


def serve_pages(conninfo: str, topic_prefix: str, port: int) -> int:
    """Serve the API and its pages over ``conninfo`` on 127.0.0.1:``port`` until SIGTERM or
    Ctrl-C (``speechstream demo --serve``): no admin key, no operator key, so nothing is
    published."""
    from api.publisher import KafkaPublisher
    from api.service import ApiService
    from api.store import PostgresStore

    settings = ApiSettings().model_copy(update={"host": "127.0.0.1", "port": port})
    kafka = KafkaSettings().model_copy(update={"topic_prefix": topic_prefix})
    registry = CollectorRegistry()
    service = ApiService(settings, PostgresStore(conninfo), KafkaPublisher(kafka, None),
                         registry)
    return serve(service, registry, None)
