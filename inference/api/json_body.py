"""Parsing request bodies without letting one body stall the event loop.

FastAPI parses a JSON body with `json.loads` on the event loop. A 32 MiB body of a few
million short keys takes seconds there (the C parser never releases the GIL), during which
`/healthz` does not answer; a number of more than 4,300 digits fails inside the parser, as a
400 that names no field. `BoundedJSONRoute` parses instead on a worker thread,
after a cheap count of the body's separators refuses bodies with more than
`MAX_JSON_VALUES` values, and reads integers too long to convert as infinity, which every
numeric field then refuses with a 4xx naming the field.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

import anyio
from fastapi import HTTPException, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

# No generation request needs more: every field, a few init images and script arguments
# are a few hundred values. Counted as ',' and ':' bytes (an upper bound: a prompt's
# commas count too, and prompts are at most --max-prompt-length characters).
MAX_JSON_VALUES = 100_000
# Python's own limit for int() of a decimal string (sys.int_info.default_max_str_digits).
MAX_INT_DIGITS = 4300
# Deeper bodies are refused before validation; the free-form fields have their own,
# lower limit (service/schemas.py).
MAX_JSON_DEPTH = 64


class BodyRefused(HTTPException):
    """An HTTPException so that FastAPI's body parsing passes it on unchanged."""

    def __init__(self, message: str):
        # 413, as a body over --max-body-bytes: it is the body's size (in values) that is refused.
        super().__init__(413, f"body: {message}")


def _bounded_int(text: str) -> int | float:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        return -math.inf if text.startswith("-") else math.inf
    return int(text)


def parse_bounded_json(body: bytes) -> Any:
    """`json.loads` for request bodies; BodyRefused when the body has too many values or is
    nested too deep. Runs on a worker thread."""
    separators = body.count(b",") + body.count(b":")
    if separators > MAX_JSON_VALUES:
        raise BodyRefused(f"has more than {MAX_JSON_VALUES} values; no request needs that many")
    value = json.loads(body, parse_int=_bounded_int)
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        if children and depth >= MAX_JSON_DEPTH:
            raise BodyRefused(f"is nested more than {MAX_JSON_DEPTH} levels deep")
        pending.extend((child, depth + 1) for child in children)
    return value


class BoundedJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            self._json = await anyio.to_thread.run_sync(parse_bounded_json, body)
        return self._json


class BoundedJSONRoute(APIRoute):
    """A route whose JSON body is parsed by `parse_bounded_json`, off the event loop."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(BoundedJSONRequest(request.scope, request.receive))

        return handle
