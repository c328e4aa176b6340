"""`speechstream evaluator run`: one evaluator consumer for one device."""

from __future__ import annotations

import argparse
import logging

from prometheus_client import CollectorRegistry

from cli.exceptions import UsageError
from cli.serve import add_metrics_port, serve, with_metrics_port
from consumers.evaluator import Evaluator, evaluator_id
from consumers.exceptions import ScorerLoadError
from consumers.metrics import EvaluatorMetrics
from consumers.scorers import load_scorer
from consumers.settings import EvaluatorSettings
from speechstream.memory import limit_arenas
from speechstream.settings import KafkaSettings, ScoringSettings
from speechstream.trust import service_trust


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluator`` command group."""
    evaluator = subparsers.add_parser("evaluator", help="score evaluation requests on a device")
    sub = evaluator.add_subparsers(dest="evaluator_command", required=True)
    run = sub.add_parser(
        "run", help="consume requests and emit PRECHECK, RUNNING and score events",
        description="Run one evaluator (one per device). Each score is committed with its "
        "request's offset in one Kafka transaction. Settings: SPEECHSTREAM_EVALUATOR_GROUP_ID, "
        "_EVALUATOR_ID, _TRANSACTION_TIMEOUT_MS, _SESSION_TIMEOUT_MS, _STATE_DIR (results "
        "computed and not committed yet, committed by the next run instead of evaluating "
        "again), _MALLOC_ARENA_MAX (2; 0: glibc's default), _MALLOC_TRIM (true: free heap "
        "handed back after its work), _METRICS_PORT (serves "
        "/metrics and /health), _KEY_FILE (the key it signs with, trusted as evaluator "
        "<evaluator id>-<device>); SPEECHSTREAM_TRUST_OPERATOR_KEY (the root of trust: "
        "unsigned or untrusted requests and scores are dead-lettered, docs/security.md); "
        "the TTS scorer reads SPEECHSTREAM_SCORING_* (see docs/scoring.md).",
    )
    run.add_argument("--device", default=None, help="cpu or cuda:N (default: settings, cpu)")
    run.add_argument(
        "--scorer", default="tts",
        help="tts (the TTS scoring engine, default) or module:Class of another Scorer",
    )
    add_metrics_port(run)
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    settings = with_metrics_port(EvaluatorSettings(), args)
    if args.device is not None:
        settings = settings.model_copy(update={"device": args.device})
    if settings.device != "cpu" and not settings.device.startswith("cuda:"):
        raise UsageError(f"--device must be cpu or cuda:N, got {settings.device!r}")
    # Before the scorer and the Kafka clients start their threads.
    limit_arenas(settings.malloc_arena_max)
    try:
        scorer = load_scorer(args.scorer, settings.device, ScoringSettings())
    except ScorerLoadError as exc:
        raise UsageError(str(exc)) from exc
    # NVML's bindings come with the evaluator extra, as torch does: imported only to run one.
    from consumers.gpu import export_gpu_memory

    log = logging.getLogger("speechstream.evaluator")
    kafka = KafkaSettings()
    name = evaluator_id(settings)
    with service_trust(kafka, settings, role="evaluator", name=name, logger=log) as trust:
        registry = CollectorRegistry()
        export_gpu_memory(registry, settings.device)
        evaluator = Evaluator(
            kafka, settings, scorer, metrics=EvaluatorMetrics.create(registry), logger=log,
            verify=trust.verify, signer=trust.signer,
        )
        return serve(evaluator, registry, settings.metrics_port)
