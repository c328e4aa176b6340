"""`speechstream evaluator run`: one evaluator consumer for one device."""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import signal
import sys
import threading

from prometheus_client import CollectorRegistry, start_http_server

from consumers.base import Scorer
from consumers.evaluator import Evaluator
from consumers.exceptions import ScorerLoadError
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
        help="tts (the TTS scoring engine, default) or module:Class of another Scorer",
    )
    run.add_argument("--metrics-port", type=int, default=None,
                     help="serve Prometheus metrics on this port (default: settings, none)")
    run.set_defaults(func=_run)


def load_scorer(spec: str, device: str) -> Scorer:
    """The scorer named by ``spec``: ``tts`` or ``module:Class``.

    The class is constructed with ``device=`` when its constructor takes it, else with no
    arguments.
    """
    if spec == "tts":
        from consumers.tts import TTSScorer

        return TTSScorer(device=device)
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ScorerLoadError(f"--scorer must be 'tts' or module:Class, got {spec!r}")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ScorerLoadError(f"cannot load scorer {spec!r}: {exc}") from exc
    if "device" in inspect.signature(cls).parameters:
        return cls(device=device)
    return cls()


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = EvaluatorSettings()
    updates = {"device": args.device, "metrics_port": args.metrics_port}
    settings = settings.model_copy(update={k: v for k, v in updates.items() if v is not None})
    if settings.device != "cpu" and not settings.device.startswith("cuda:"):
        print(f"error: --device must be cpu or cuda:N, got {settings.device!r}", file=sys.stderr)
        return 2
    try:
        scorer = load_scorer(args.scorer, settings.device)
    except ScorerLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    registry = CollectorRegistry()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=registry)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    evaluator = Evaluator(
        KafkaSettings(), settings, scorer, metrics=EvaluatorMetrics.create(registry),
        logger=logging.getLogger("speechstream.evaluator"),
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
