"""`speechstream evaluator run`: one evaluator consumer for one device."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading

from prometheus_client import CollectorRegistry, start_http_server

from consumers.base import Scorer
from consumers.evaluator import Evaluator
from consumers.metrics import EvaluatorMetrics
from schemas.exceptions import SpeechstreamError
from speechstream.settings import EvaluatorSettings, KafkaSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluator`` command group."""
    evaluator = subparsers.add_parser("evaluator", help="score evaluation requests on a device")
    sub = evaluator.add_subparsers(dest="evaluator_command", required=True)
    run = sub.add_parser(
        "run", help="consume requests and emit PRECHECK, RUNNING and score events",
        description="Run one evaluator (one per device). Each score is committed with its "
        "request's offset in one Kafka transaction. Settings: SPEECHSTREAM_EVALUATOR_GROUP_ID, "
        "_EVALUATOR_ID, _TRANSACTION_TIMEOUT_MS, _METRICS_PORT; the TTS scorer reads "
        "SPEECHSTREAM_SCORING_* (see docs/scoring.md).",
    )
    run.add_argument("--device", default=None, help="cpu or cuda:N (default: settings, cpu)")
    run.add_argument(
        "--scorer", default="tts",
        help="tts (the TTS scoring engine) or module:Class of another Scorer",
    )
    run.set_defaults(func=_run)


def load_scorer(spec: str, device: str) -> Scorer:
    """The scorer named by ``spec``: ``tts`` or ``module:Class`` (constructed with no args)."""
    if spec == "tts":
        from consumers.tts import TTSScorer

        return TTSScorer(device=device)
    module, _, name = spec.partition(":")
    if not name:
        raise SystemExit(f"--scorer must be 'tts' or module:Class, got {spec!r}")
    return getattr(importlib.import_module(module), name)()


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = EvaluatorSettings()
    if args.device:
        settings = settings.model_copy(update={"device": args.device})
    registry = CollectorRegistry()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=registry)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    evaluator = Evaluator(
        KafkaSettings(), settings, load_scorer(args.scorer, settings.device),
        metrics=EvaluatorMetrics.create(registry),
    )
    try:
        evaluator.start()
        evaluator.run(stop)
    except SpeechstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        evaluator.close()
    return 0
