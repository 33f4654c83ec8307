"""The error responses each router documents in the OpenAPI schema, with their bodies.

FastAPI documents a route's 200 and its 422; every other status a route can answer (a
body that is not JSON, auth, the body limit, a full queue, loading or draining, a failed
generation) is declared here, so that clients generated from `/openapi.json`, and the
schema fuzz test, see every answer the server gives. The shapes are the ones
`api/errors.py` builds.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class A1111Error(BaseModel):
    """`{"error", "detail", "body", "errors"}`, as A1111 answers errors."""

    error: str
    detail: str
    body: Any = None
    errors: Any = None


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


def _a1111(description: str) -> dict[str, Any]:
    return {"model": A1111Error, "description": description}


# Answered by the layers in front of every route (auth, body size), in A1111's shape.
_FRONT: dict[int | str, dict[str, Any]] = {
    401: _a1111("no or wrong credentials (with --auth-file)"),
    413: _a1111("the body is larger than --max-body-bytes, has more than 100,000 values or is nested more than 64 levels"),
}

A1111_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _a1111("the body is not JSON (or not UTF-8)"),
    **_FRONT,
    404: _a1111("`Init image not found`, or an unknown checkpoint"),
    429: _a1111("the queue is full (with Retry-After)"),
    500: _a1111("the generation failed"),
    503: _a1111("loading, draining, out of memory, or the worker is stopped or stuck"),
}


def _openai(description: str) -> dict[str, Any]:
    return {"model": OpenAIError, "description": description}


OPENAI_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _openai("a field is wrong (param names it) or the body is not JSON"),
    401: _FRONT[401],
    404: _openai("unknown model or image link"),
    # From the body-size layer in A1111's shape, or from this router in OpenAI's.
    413: {"model": A1111Error | OpenAIError, "description": _FRONT[413]["description"]},
    429: _openai("the queue is full (code queue_full, with Retry-After)"),
    500: _openai("the generation failed"),
    503: _openai("loading, draining, out of memory, or the worker is stopped or stuck"),
}
