"""Running a service from a command: settings read, clients built, signals handled here."""

from __future__ import annotations

import logging
import sys

from prometheus_client import CollectorRegistry

from speechstream.exceptions import SpeechstreamError
from speechstream.service import Service, run_service, stop_on_signals

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def serve(service: Service, registry: CollectorRegistry, metrics_port: int | None) -> int:
    """Run ``service`` until SIGTERM or SIGINT; its exit status (1 and the reason on error)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        run_service(service, stop=stop_on_signals(), registry=registry,
                    metrics_port=metrics_port)
    except SpeechstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
