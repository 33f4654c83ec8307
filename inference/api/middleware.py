"""ASGI middleware: request body size limit and request metrics."""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..metrics import Metrics
from .errors import a1111_error


class BodyTooLarge(HTTPException):
    # An HTTPException, so FastAPI's body parsing re-raises it as is (any other error
    # while reading the body becomes a 400 there).
    def __init__(self, limit: int):
        super().__init__(413, f"body: request body is larger than the limit of {limit} bytes")


def _too_large(limit: int) -> JSONResponse:
    return a1111_error(413, "PayloadTooLarge", f"body: request body is larger than the limit of {limit} bytes")


class BodySizeLimitMiddleware:
    """Refuses bodies over `limit` bytes: by Content-Length up front, or while streaming."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _too_large(self.limit)(scope, receive, send)
            return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await _too_large(self.limit)(scope, receive, send)


class MetricsMiddleware:
    """Observes latency by route template (bounded label values), method and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or ("static" if scope["path"] == "/" else "unmatched")
            self.metrics.observe_request(template, scope["method"], status, time.perf_counter() - started)
