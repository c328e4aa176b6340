"""What the API checks before it reads a request's body: the admin key first, then the body's
size (a capped read) and that it parses; each answer is a status a client can act on."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import HTTPException, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024
"""No request the API takes comes near it (an ``ensure_model`` body is under 1 KiB)."""
ADMIN_HEADER = "admin-key"
BAD_ADMIN_KEY = "Invalid or missing admin key"


def check_admin_key(expected: SecretStr | None, key: str | None) -> None:
    """403 unless ``key`` is the configured admin key (compared in constant time); without a
    configured key every admin call is refused."""
    if expected is None or key is None or not hmac.compare_digest(
        key.encode(), expected.get_secret_value().encode()
    ):
        raise HTTPException(status_code=403, detail=BAD_ADMIN_KEY)


class BodyTooLarge(HTTPException):
    """The request's body is over the limit: send a smaller one."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body over {limit} bytes")


class BodyLimit:
    """ASGI middleware: a request body is read up to ``limit`` bytes and no further (413). The
    check happens as the body is read, so a route that refuses a request before reading its
    body (a wrong admin key) answers that first, and never reads it."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        received = 0

        async def capped() -> Message:
            nonlocal received
            if declared.isdigit() and (len(declared) > 12 or int(declared) > self.limit):
                raise BodyTooLarge(self.limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, capped, send)


def _body_problem(body: bytes) -> RequestValidationError | None:
    """Why ``body`` is no JSON FastAPI can read, as the 422 FastAPI answers for bad JSON (it
    would answer 400 for an integer over Python's digit limit, a non-UTF-8 body, or nesting
    deeper than the parser's recursion limit)."""
    try:
        json.loads(body)
    except (ValueError, RecursionError) as exc:
        return RequestValidationError([{
            "type": "json_invalid", "loc": ("body",), "msg": "JSON decode error",
            "input": {}, "ctx": {"error": str(exc)[:200]},
        }])
    return None


class AdminKeyFirst(APIRoute):
    """A route whose admin key (if it requires one: :func:`require_admin` among its
    dependencies) is checked before its body is read; its body is then read within the limit
    and must parse, or the answer is 422."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()
        admin = any(d.dependency is require_admin for d in self.dependencies)
        has_body = self.body_field is not None

        async def guarded(request: Request) -> Response:
            if admin:
                check_admin_key(request.app.state.settings.admin_key,
                                request.headers.get(ADMIN_HEADER))
            if has_body:
                body = await request.body()
                if body and (problem := _body_problem(body)) is not None:
                    raise problem
            return await handler(request)

        return guarded


def require_admin(
    request: Request,
    key: Annotated[str | None, Security(APIKeyHeader(name=ADMIN_HEADER, auto_error=False))],
) -> None:
    """The ``admin-key`` header must be the configured admin key (:class:`AdminKeyFirst`
    checks it before the body is read; this dependency marks the route, documents the header
    and checks it again)."""
    check_admin_key(request.app.state.settings.admin_key, key)
