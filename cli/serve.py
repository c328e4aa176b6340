"""Running a service from a command: settings read, clients built, signals handled here."""

from __future__ import annotations

import argparse
import logging
from typing import TypeVar

from prometheus_client import CollectorRegistry

from speechstream.kafka.lag import export_lag
from speechstream.service import Service, run_service, stop_on_signals
from speechstream.settings import ServiceSettings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
S = TypeVar("S", bound=ServiceSettings)


def serve(service: Service, registry: CollectorRegistry, metrics_port: int | None) -> int:
    """Run ``service`` until SIGTERM or SIGINT; 0 (an error propagates to ``cli.main``, which
    prints it). A service with consumers exports their lag (``speechstream_consumer_lag``)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    export_lag(registry, service)
    run_service(service, stop=stop_on_signals(), registry=registry, metrics_port=metrics_port)
    return 0


def add_metrics_port(parser: argparse.ArgumentParser) -> None:
    """The ``--metrics-port`` option every service command has."""
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve /metrics and /health on this port (default: settings, none)")


def with_metrics_port(settings: S, args: argparse.Namespace) -> S:
    """``settings`` with the port given on the command line, if one was."""
    if args.metrics_port is None:
        return settings
    return settings.model_copy(update={"metrics_port": args.metrics_port})
