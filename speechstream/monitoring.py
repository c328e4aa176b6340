"""The one HTTP server of every service: ``GET /metrics`` (Prometheus) and ``GET /health`` (JSON).

``/health`` answers 200 while the service reports itself healthy and 503 otherwise, with the
service's own details, so that an orchestrator can restart a stuck service.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from speechstream.exceptions import ServiceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Health:
    """What ``/health`` answers: ``status`` is ``starting``, ``ok``, ``degraded`` or ``stopped``."""

    healthy: bool
    status: str
    details: dict[str, Any] = field(default_factory=dict)


HEALTH_METRIC = "speechstream_healthy"


class HealthGauge(Collector):
    """``speechstream_healthy{service, status}``: 1 while ``health()`` says healthy, else 0,
    asked at each scrape (the alert rules' "unhealthy")."""

    def __init__(self, service: str, health: Callable[[], Health]) -> None:
        self._service = service
        self._health = health

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(HEALTH_METRIC, "1 while the service reports itself healthy "
                                   "(/health answers 200), else 0", labels=["service", "status"])
        health = self._health()
        family.add_metric([self._service, health.status], 1.0 if health.healthy else 0.0)
        yield family


class MonitoringServer:
    """Serves ``registry`` at ``/metrics`` and ``health()`` at ``/health`` on ``host:port``.

    Port 0 picks a free port (see :attr:`port`). The server runs in a daemon thread.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        health: Callable[[], Health],
        *,
        port: int,
        host: str = "0.0.0.0",
        service: str = "speechstream",
    ) -> None:
        self._registry = registry
        self._health = health
        self._address = (host, port)
        self._service = service
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the one picked for port 0)."""
        if self._server is None:
            raise ServiceError("the monitoring server is not started")
        return int(self._server.server_address[1])

    def start(self) -> MonitoringServer:
        """Listen and serve in a daemon thread."""
        try:
            self._server = ThreadingHTTPServer(self._address, self._handler())
        except OSError as exc:
            host, port = self._address
            raise ServiceError(
                f"{self._service}: cannot serve /metrics and /health on {host}:{port}: {exc}; "
                "choose another metrics port"
            ) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"{self._service}-monitoring", daemon=True
        )
        self._thread.start()
        log.info("%s: /metrics and /health on port %d", self._service, self.port)
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        registry, health, service = self._registry, self._health, self._service

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
                elif path == "/health":
                    try:
                        state = health()
                    except Exception as exc:  # noqa: BLE001 - an answer, not a crash
                        state = Health(False, "error", {"error": f"{type(exc).__name__}: {exc}"})
                    body = json.dumps({"service": service, **asdict(state)}, default=str)
                    self._send(200 if state.healthy else 503, "application/json",
                               body.encode("utf-8"))
                else:
                    self._send(404, "text/plain; charset=utf-8", b"try /metrics or /health\n")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("%s: %s", service, format % args)

        return Handler
