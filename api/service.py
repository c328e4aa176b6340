"""The REST API as a service: uvicorn serving the app until the stop event is set."""

from __future__ import annotations

import threading

import uvicorn
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.publisher import Publisher
from api.settings import ApiSettings
from api.store import Store
from speechstream.monitoring import Health


class ApiService:
    """Serves the API on ``settings.host:settings.port`` (the store and the publisher are
    opened by the app's lifespan)."""

    name = "api"

    def __init__(self, settings: ApiSettings, store: Store, publisher: Publisher,
                 registry: CollectorRegistry) -> None:
        self._settings = settings
        self.app = create_app(settings, store, publisher, registry)
        self._server: uvicorn.Server | None = None

    def start(self) -> None:
        """Configure the server (it listens in :meth:`run`)."""
        config = uvicorn.Config(self.app, host=self._settings.host, port=self._settings.port,
                                log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set (SIGTERM/SIGINT stop uvicorn directly, too)."""
        server = self._server
        assert server is not None, "call start() first"

        def stop_when_asked() -> None:
            while not stop.wait(0.2) and not server.should_exit:
                pass
            server.should_exit = True

        watcher = threading.Thread(target=stop_when_asked, name="api-stop", daemon=True)
        watcher.start()
        server.run()
        stop.set()
        watcher.join(1)

    def close(self) -> None:
        """Nothing left open: the app's lifespan closed the store and the publisher."""

    def health(self) -> Health:
        """Healthy once uvicorn has started."""
        server = self._server
        if server is None or not server.started:
            return Health(False, "starting")
        return Health(not server.should_exit, "ok" if not server.should_exit else "stopping")
