"""`speechstream audit run | summary`: re-score a deterministic sample of the scores on this
device; the audits per evaluator."""

from __future__ import annotations

import argparse
import json
import logging
import os

import psycopg
from prometheus_client import CollectorRegistry

from cli.exceptions import CommandError, UsageError
from cli.serve import add_metrics_port, serve, with_metrics_port
from consumers.settings import AuditSettings
from sinks.queries import AuditSummaryRow, audit_summary
from speechstream.memory import limit_arenas
from speechstream.settings import (
    DatabaseSettings,
    KafkaSettings,
    ScoringSettings,
)
from speechstream.trust import service_trust


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``audit`` command group."""
    audit = subparsers.add_parser(
        "audit", help="re-score a sample of the scores and publish agree/disagree",
        description="An auditor reads the score topic in its own consumer group, re-scores a "
        "deterministic sample of the COMPLETED scores on its own device, as each score's "
        "manifest describes it, and publishes score.audited (agree, disagree or unavailable, "
        "both totals, the tolerance, the manifests' differences). See docs/scoring.md.",
    )
    sub = audit.add_subparsers(dest="audit_command", required=True)
    run = sub.add_parser(
        "run", help="run the auditor until SIGTERM",
        description="Audit the sampled scores as they arrive (from the start of the score "
        "topic the first time). It runs at the lowest CPU priority (niceness +10). Settings: "
        "SPEECHSTREAM_AUDIT_SAMPLE_RATE (0.05), _DEVICE (cpu), _TOLERANCE (1e-6 on CPU, 1e-3 "
        "on a GPU), _AUDITOR_ID (the host name), _GROUP_ID, _NICENESS, _METRICS_PORT, "
        "_MALLOC_ARENA_MAX (2; 0: glibc's default), _MALLOC_TRIM (true: free heap handed "
        "back after its work), "
        "_KEY_FILE (the key its audits are signed with, trusted as auditor <auditor id>); "
        "SPEECHSTREAM_TRUST_OPERATOR_KEY (the root of trust: untrusted scores are "
        "dead-lettered, docs/security.md); the "
        "scoring engine reads SPEECHSTREAM_SCORING_* (see docs/scoring.md).",
    )
    run.add_argument("--sample-rate", type=float, default=None,
                     help="share of the scores audited, 0 to 1 (default: settings, 0.05)")
    run.add_argument("--device", default=None, help="cpu or cuda:N (default: settings, cpu)")
    run.add_argument("--tolerance", type=float, default=None,
                     help="largest difference of totals that agrees (default: by device)")
    add_metrics_port(run)
    run.set_defaults(func=_run)
    summary = sub.add_parser(
        "summary", help="the audits per evaluator, from PostgreSQL",
        description="How many of each evaluator's scores the audits found agreeing, "
        "disagreeing or unavailable, and its disagreement rate, read from DATABASE_URL; the "
        "most disagreeing evaluator first.",
    )
    summary.add_argument("--json", action="store_true", help="print a JSON list of rows")
    summary.set_defaults(func=_summary)


def render(rows: list[AuditSummaryRow]) -> str:
    """The summary as a fixed-width table."""
    header = (f"{'evaluator':<32} {'audits':>6} {'agree':>6} {'disagree':>8} "
              f"{'unavailable':>11} {'disagree rate':>13}")
    lines = [header, "-" * len(header)]
    for r in rows:
        rate = "-" if r.disagree_rate is None else f"{r.disagree_rate:.1%}"
        lines.append(f"{r.evaluator:<32} {r.audits:>6} {r.agree:>6} {r.disagree:>8} "
                     f"{r.unavailable:>11} {rate:>13}")
    return "\n".join(lines)


def _summary(args: argparse.Namespace) -> int:
    try:
        with psycopg.connect(DatabaseSettings().conninfo) as conn:
            rows = audit_summary(conn)
    except psycopg.Error as exc:
        raise CommandError(f"cannot read the audits: {exc}") from exc
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
    else:
        print(render(rows))
    return 0


def _run(args: argparse.Namespace) -> int:
    from consumers.audit import Auditor
    from consumers.gpu import export_gpu_memory
    from consumers.metrics import AuditMetrics

    settings = with_metrics_port(AuditSettings(), args)
    update = {name: getattr(args, name) for name in ("sample_rate", "device", "tolerance")
              if getattr(args, name) is not None}
    settings = settings.model_copy(update=update)
    if not 0.0 <= settings.sample_rate <= 1.0:
        raise UsageError(f"--sample-rate must lie in [0, 1], got {settings.sample_rate}")
    if settings.device != "cpu" and not settings.device.startswith("cuda:"):
        raise UsageError(f"--device must be cpu or cuda:N, got {settings.device!r}")
    if settings.tolerance is not None and settings.tolerance < 0:
        raise UsageError("--tolerance must not be negative")
    # Before the scorer and the Kafka clients start their threads.
    limit_arenas(settings.malloc_arena_max)
    if settings.niceness:
        os.nice(settings.niceness)
    kafka = KafkaSettings()
    log = logging.getLogger("speechstream.audit")
    with service_trust(kafka, settings, role="auditor", name=settings.auditor_id,
                       logger=log) as trust:
        registry = CollectorRegistry()
        export_gpu_memory(registry, settings.device)
        auditor = Auditor(kafka, settings, ScoringSettings(),
                          metrics=AuditMetrics.create(registry), logger=log,
                          verify=trust.verify, signer=trust.signer)
        return serve(auditor, registry, settings.metrics_port)
