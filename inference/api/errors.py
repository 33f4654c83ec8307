"""Error responses: `{"error", "detail", "body", "errors"}` as A1111 sends them.

Schema violations keep FastAPI's 422 shape (A1111 does the same). Nothing here echoes
headers or settings, so no credential or token can leak into an error body.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import GenerationFailed, OutOfMemory, QueueFull, ShuttingDown, WorkerStopped
from .generation import ClientDisconnected

log = logging.getLogger(__name__)

# nginx's code for "client closed request": logged and counted, never seen by the client.
CLIENT_CLOSED_REQUEST = 499


def error_response(status: int, kind: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": kind, "detail": detail, "body": None, "errors": None}, status_code=status, headers=headers)


def failure_status(error: GenerationFailed) -> int:
    return 503 if isinstance(error, (OutOfMemory, WorkerStopped)) else 500


def _json_safe(value: Any) -> Any:
    """NaN and infinity (which Python's JSON parser accepts) as strings: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422 body; its default handler fails (a 500) when the offending
        # input is `NaN` or `Infinity`, which it echoes back.
        return JSONResponse({"detail": _json_safe(jsonable_encoder(error.errors()))}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(error.status_code, "HTTPException", str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, error: QueueFull) -> JSONResponse:
        return error_response(429, "QueueFull", str(error), {"Retry-After": str(error.retry_after)})

    @app.exception_handler(ShuttingDown)
    async def shutting_down(request: Request, error: ShuttingDown) -> JSONResponse:
        return error_response(503, "ShuttingDown", str(error), {"Retry-After": "5"})

    @app.exception_handler(GenerationFailed)
    async def generation_failed(request: Request, error: GenerationFailed) -> JSONResponse:
        return error_response(failure_status(error), error.kind, str(error))

    @app.exception_handler(ClientDisconnected)
    async def client_disconnected(request: Request, error: ClientDisconnected) -> JSONResponse:
        log.info("client disconnected from %s; its work was cancelled", request.url.path)
        return error_response(CLIENT_CLOSED_REQUEST, "ClientDisconnected", "the client closed the request")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return error_response(500, type(error).__name__, "internal server error; see the server log")
