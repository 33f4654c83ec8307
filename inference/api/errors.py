"""Domain errors as HTTP responses, in each dialect's shape. The one place that knows both.

- A1111 (`/sdapi/v1`, the seed API, and everything outside the OpenAI routes):
  `{"error", "detail", "body", "errors"}`, as A1111 sends them; `a1111_error` builds that
  body for the error handlers, the body size limit and the auth middleware alike. A bad
  field keeps FastAPI's 422 shape (A1111 does the same).
- OpenAI (`/v1/images`, `/v1/models`): `{"error": {"message", "type", "param", "code"}}`,
  which the `openai` client turns into `BadRequestError` & co.; a bad field is a 400 that
  names the field as OpenAI's clients know it (`n`, `size`).

Nothing here echoes headers or settings, so no credential or token can leak into an
error body.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    ClientDisconnected,
    GenerationFailed,
    InitImageNotFound,
    InvalidInput,
    ModelNotFound,
    NotReady,
    OutOfMemory,
    QueueFull,
    ServiceError,
    ShuttingDown,
    Stalled,
    WorkerStopped,
)

log = logging.getLogger(__name__)

# nginx's code for "client closed request": logged and counted, never seen by the client.
CLIENT_CLOSED_REQUEST = 499
# Our request fields, as OpenAI's clients know them.
OPENAI_PARAM_NAMES = {"width": "size", "height": "size", "batch_size": "n"}

# Most specific first: the first class an error is an instance of gives its status.
_STATUS: tuple[tuple[type[ServiceError], int], ...] = (
    (InvalidInput, 422),
    (ModelNotFound, 404),
    (InitImageNotFound, 404),
    (QueueFull, 429),
    (ClientDisconnected, CLIENT_CLOSED_REQUEST),
    (NotReady, 503),
    (ShuttingDown, 503),
    (OutOfMemory, 503),
    (WorkerStopped, 503),
    (Stalled, 503),
    (GenerationFailed, 500),
)
# What A1111 calls these: its own HTTPException (`{"error": "HTTPException"}`).
_A1111_HTTP_EXCEPTIONS = (NotReady, InitImageNotFound, ModelNotFound)


def status_of(error: ServiceError) -> int:
    return next((status for kind, status in _STATUS if isinstance(error, kind)), 500)


def headers_of(error: ServiceError) -> dict[str, str] | None:
    if isinstance(error, QueueFull):
        return {"Retry-After": str(error.retry_after)}
    if isinstance(error, ShuttingDown):
        return {"Retry-After": "5"}
    return None


def validation_item(error: InvalidInput) -> dict[str, Any]:
    """One entry of FastAPI's 422 `detail`, whose `loc` and message name the field."""
    return {"type": "value_error", "loc": ("body", *error.field), "msg": str(error), "input": error.value}


def _json_safe(value: Any) -> Any:
    """NaN and infinity (which Python's JSON parser accepts) as strings: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


# -- A1111 ---------------------------------------------------------------------------


def a1111_error(status: int, kind: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": kind, "detail": detail, "body": None, "errors": None}, status_code=status, headers=headers)


def validation_response(errors: list[dict[str, Any]]) -> JSONResponse:
    # FastAPI's own 422 body; its default handler fails (a 500) when the offending input
    # is `NaN` or `Infinity`, which it echoes back.
    return JSONResponse({"detail": _json_safe(jsonable_encoder(errors))}, status_code=422)


def a1111_response(error: ServiceError) -> JSONResponse:
    if isinstance(error, InvalidInput):
        return validation_response([validation_item(error)])
    kind = "HTTPException" if isinstance(error, _A1111_HTTP_EXCEPTIONS) else error.kind
    return a1111_error(status_of(error), kind, str(error), headers_of(error))


# -- OpenAI --------------------------------------------------------------------------


def openai_error(status: int, message: str, *, kind: str, param: str | None = None, code: str | None = None,
                 headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def openai_validation_error(first: dict) -> JSONResponse:
    """A 400 naming the field as the client sent it (`n`, `size`), not our own names."""
    if first.get("type") == "json_invalid":
        return openai_error(400, "We could not parse the JSON body of your request: it is not valid JSON.",
                            kind="invalid_request_error")
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    message = first.get("msg", "invalid request")
    if not location or not location[0].isidentifier():  # the body itself is wrong (not an object)
        return openai_error(400, f"the request body is invalid: {message}", kind="invalid_request_error")
    ours = location[0]
    param = OPENAI_PARAM_NAMES.get(ours, ours)
    path = ".".join([param, *location[1:]])
    if message.startswith(f"{ours}: "):
        message = message[len(ours) + 2:]
    if ours in ("width", "height"):  # size: "width must be a multiple of 8"
        message = f"{ours} {message}"
    return openai_error(400, f"{path}: {message}", kind="invalid_request_error", param=param)


def openai_response(error: ServiceError) -> JSONResponse:
    if isinstance(error, InvalidInput):
        return openai_validation_error(validation_item(error))
    status, headers = status_of(error), headers_of(error)
    if isinstance(error, QueueFull):
        return openai_error(status, str(error), kind="rate_limit_error", code="queue_full", headers=headers)
    if isinstance(error, ModelNotFound):
        return openai_error(status, str(error), kind="invalid_request_error", param="model", code="model_not_found")
    kind = "invalid_request_error" if status < 500 else "server_error"
    code = error.kind if isinstance(error, GenerationFailed) else None
    return openai_error(status, str(error), kind=kind, code=code, headers=headers)


def openai_http_error(error: StarletteHTTPException) -> JSONResponse:
    kind = "invalid_request_error" if error.status_code < 500 else "server_error"
    return openai_error(error.status_code, str(error.detail), kind=kind, headers=error.headers)


# -- the app's handlers (A1111's shape, outside the OpenAI routes) --------------------


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return validation_response(list(error.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return a1111_error(error.status_code, "HTTPException", str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        if isinstance(error, ClientDisconnected):
            log.info("client disconnected from %s; its work was cancelled", request.url.path)
        return a1111_response(error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return a1111_error(500, type(error).__name__, "internal server error; see the server log")
