"""The FastAPI app: its routers, the store and publisher opened in its lifespan, its errors,
the limit on request bodies."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from api import pages, routes
from api.exceptions import NoOperatorKeyError, StoreUnavailableError
from api.guards import BodyLimit
from api.metrics import ApiMetrics
from api.publisher import Publisher
from api.settings import ApiSettings
from api.store import Store
from speechstream.exceptions import DeliveryError


class _AsciiJSON(JSONResponse):
    """JSON escaped to ASCII: a lone surrogate in a message cannot fail the answer."""

    def render(self, content: object) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


async def invalid(request: Request, exc: Exception) -> Response:
    """FastAPI's 422, less the input it echoes (which may hold what JSON cannot carry: a lone
    surrogate, a NaN): each error's type, field and message."""
    assert isinstance(exc, RequestValidationError)
    errors = [{k: v for k, v in e.items() if k != "input"} for e in exc.errors()]
    if request.url.path.startswith("/board"):
        said = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        return pages.error_page(request, 422, "Bad request", said)
    return _AsciiJSON(status_code=422, content={"detail": jsonable_encoder(errors)})


def create_app(
    settings: ApiSettings, store: Store, publisher: Publisher, registry: CollectorRegistry
) -> FastAPI:
    """The API over ``store`` and ``publisher`` (opened and closed with the app)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.start()
        publisher.start()
        try:
            yield
        finally:
            try:
                publisher.close()
            finally:
                store.close()

    app = FastAPI(title="speechstream API", lifespan=lifespan,
                  description="The original system's HTTP surface, served from PostgreSQL.")
    app.state.settings = settings
    app.state.store = store
    app.state.publisher = publisher
    app.state.registry = registry
    for router in (routes.submissions, routes.minerboard, routes.entries, routes.weights,
                   routes.service, pages.pages):
        app.include_router(router)
    app.mount("/board/static", pages.static, name="static")
    app.add_exception_handler(pages.PageError, pages.page_error)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    for error in (StoreUnavailableError, NoOperatorKeyError, DeliveryError):
        app.add_exception_handler(error, unavailable)
    app.add_exception_handler(RequestValidationError, invalid)

    # Inside the measuring middleware (added after it): its 413 is raised in the route, as
    # the body is read, and answered like any HTTPException.
    app.add_middleware(BodyLimit)
    metrics = ApiMetrics.create(registry)

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unknown")
        metrics.requests.labels(path, str(response.status_code)).inc()
        metrics.seconds.labels(path).observe(time.perf_counter() - started)
        return response

    return app
