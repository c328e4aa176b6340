"""`speechstream streams worker`: the faust-streaming intake worker (validation and routing)."""

from __future__ import annotations

import argparse
import logging

from prometheus_client import CollectorRegistry

from cli.serve import add_metrics_port, serve, with_metrics_port
from speechstream.settings import KafkaSettings, TrustSettings
from speechstream.trust import service_trust
from streams.settings import StreamsSettings

log = logging.getLogger(__name__)


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
        "undecodable records, and records whose signer may not say them, to deadletter. "
        "With a root of trust (SPEECHSTREAM_TRUST_OPERATOR_KEY) every record on its internal "
        "topics must carry a trusted signature and everything it writes is signed with "
        "SPEECHSTREAM_STREAMS_KEY_FILE (role intake, name intake); attested submissions and "
        "uid reassignments are accepted from SPEECHSTREAM_STREAMS_OPERATOR_KEY, by default "
        "the root key (set it to an attestation key of the REST API's own, so that the root "
        "key stays off the API's host). Settings: "
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


def operator_key_of(streams: StreamsSettings, trust: TrustSettings) -> StreamsSettings:
    """``streams`` with the key attestations and reassignments are accepted from: its own
    (SPEECHSTREAM_STREAMS_OPERATOR_KEY: an attestation key the REST API holds, so that the
    root key stays off the API's host), else the root of trust's."""
    if streams.operator_key is None and trust.operator_key is not None:
        return streams.model_copy(update={"operator_key": trust.operator_key})
    if streams.operator_key not in (None, trust.operator_key):
        log.info("attested submissions and uid reassignments are accepted from %s, not the "
                 "root of trust", streams.operator_key)
    return streams


def _worker(args: argparse.Namespace) -> int:
    from streams.metrics import StreamsMetrics
    from streams.worker import IntakeWorker

    trust = TrustSettings()
    settings = operator_key_of(with_metrics_port(StreamsSettings(), args), trust)
    kafka = KafkaSettings()
    with service_trust(kafka, settings, role="intake", name="intake", trust=trust,
                       logger=log) as checked:
        registry = CollectorRegistry()
        worker = IntakeWorker(kafka, settings, StreamsMetrics.create(registry),
                              verify=checked.verify, signer=checked.signer)
        return serve(worker, registry, settings.metrics_port)


def _move_state(args: argparse.Namespace) -> int:
    from streams.move_state import move_state

    new_app = StreamsSettings().app_id
    report = move_state(KafkaSettings(), args.old_app, new_app)
    for topic, n in sorted(report.records.items()):
        print(f"copied {n} records to {topic}")
    print(f"copied {report.offsets} committed offsets: {args.old_app} → {new_app}")
    return 0
