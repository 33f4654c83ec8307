"""ASGI middleware: request body size limit and request metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence

from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match
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


# Request metrics get one series per label combination, kept for the life of the process
# and scraped forever: every label value comes from a small fixed set, never from what a
# client wrote (a made-up method or path must not add a series).
METRIC_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in METRIC_METHODS else "other"


def status_label(status: int) -> str:
    # The app only answers the codes it knows; anything else would be a bug, not a label.
    return str(status) if 100 <= status <= 599 else "other"


def route_label(scope: Scope, root_path: str, routes: Sequence[BaseRoute] = ()) -> str:
    """The route's template (`/sdapi/v1/options`, `/v1/models/{model_id:path}`), a mount's
    prefix (`/web`), else `unmatched`: never the raw path.

    A request answered before routing (a 401 from the auth layer, a 413 by Content-Length)
    carries no route: it gets the template of the route in `routes` it would have gone to,
    found as the router finds it (a full match first, else one that differs only in the
    method), without running it."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if template:
        return template
    mounted = scope.get("root_path", root_path)
    if mounted != root_path:
        return mounted[len(root_path):]  # a static mount (its prefix is fixed in code)
    return _template_matching(scope, routes) or "unmatched"


def _template_matching(scope: Scope, routes: Sequence[BaseRoute]) -> str | None:
    # FastAPI keeps an included router's routes inside one entry of `routes`;
    # iter_route_contexts lists them one by one, as routing and the OpenAPI schema see them.
    method_differs = None
    for route in iter_route_contexts(routes):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route.path
        if match is Match.PARTIAL and method_differs is None:
            method_differs = route.path
    return method_differs


class MetricsMiddleware:
    """Observes latency by route template, method and status, each from a bounded set.

    `routes`: the app's routes (the live list), to label requests answered before routing.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute] = ()):
        self.app = app
        self.metrics = metrics
        self.routes = routes

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

        root_path = scope.get("root_path", "")
        try:
            await self.app(scope, receive, observing_send)
        finally:
            self.metrics.observe_request(
                route_label(scope, root_path, self.routes), method_label(scope["method"]), status_label(status),
                time.perf_counter() - started,
            )
