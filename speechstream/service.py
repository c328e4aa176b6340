"""The one shape of a long-running service, and the runner every command uses.

A service is built from its settings and injected clients (nothing connects in its
constructor), then ``start()``, ``run(stop)`` until the stop event is set, ``close()``. Its
``health()`` is served at ``/health``, beside its metrics at ``/metrics``, by the floor's one
monitoring server. New services (validator weights, the REST API, audits) take this shape.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry

from speechstream.monitoring import Health, HealthGauge, MonitoringServer

log = logging.getLogger(__name__)


class Service(Protocol):
    """A long-running service: start once, run until ``stop`` is set, close once."""

    name: str

    def start(self) -> None:
        """Connect, subscribe, load: everything that can fail before the first event."""

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set (or an unrecoverable error is raised)."""

    def close(self) -> None:
        """Release clients and connections; called once, also after a failed start."""

    def health(self) -> Health:
        """The service's state as ``/health`` reports it (called from another thread)."""


def stop_on_signals(
    signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> threading.Event:
    """An event set by SIGTERM or SIGINT (call from the main thread, at the edge)."""
    stop = threading.Event()
    for sig in signals:
        signal.signal(sig, lambda *_: stop.set())
    return stop


def run_service(
    service: Service,
    *,
    stop: threading.Event,
    registry: CollectorRegistry,
    metrics_port: int | None = None,
    metrics_host: str = "0.0.0.0",
) -> None:
    """Serve ``/metrics`` (with ``speechstream_healthy``) and ``/health`` (when ``metrics_port``
    is set), start the service and run it until ``stop`` is set; close it and the server
    whatever happens."""
    server = None
    registry.register(HealthGauge(service.name, service.health))
    if metrics_port:
        server = MonitoringServer(
            registry, service.health, port=metrics_port, host=metrics_host, service=service.name
        ).start()
    try:
        service.start()
        log.info("%s: started", service.name)
        service.run(stop)
    finally:
        try:
            service.close()
        finally:
            if server is not None:
                server.stop()
        log.info("%s: stopped", service.name)
