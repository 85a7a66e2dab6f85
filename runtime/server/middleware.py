"""Pure ASGI middleware: the optional API key, and HTTP counters by status.

Pure ASGI (not Starlette's BaseHTTPMiddleware) so that the request body keeps streaming
straight to the upload parser and a disconnect still reaches the handler.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.server.errors import APIError
from runtime.server.state import HttpCounters

OPEN_PATHS = frozenset({"/health"})  # liveness probes need no key


class AuthMiddleware:
    """With an API key set, every path but /health needs ``Authorization: Bearer <key>``."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.key = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.key):
            await self.app(scope, receive, send)
            return
        message = (
            "Incorrect API key provided"
            if scheme.lower() == "bearer"
            else "Missing API key: send 'Authorization: Bearer <key>'"
        )
        error = APIError(
            401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
        )
        await error.response()(scope, receive, send)


class CountingMiddleware:
    """Counts requests, requests in flight and responses by status for ``GET /stats``."""

    def __init__(self, app: ASGIApp, counters: HttpCounters) -> None:
        self.app = app
        self.counters = counters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counters = self.counters
        counters.requests += 1
        counters.in_flight += 1
        status = 500  # if the app raises before answering, ServerErrorMiddleware sends a 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            counters.in_flight -= 1
            counters.by_status[status] += 1
