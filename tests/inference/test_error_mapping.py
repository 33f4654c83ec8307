"""api/errors.py, called directly: each domain error's status, headers and body in the
A1111 and OpenAI shapes (the HTTP tests cover the same answers end to end)."""

from __future__ import annotations

import json

import pytest

from inference.api.errors import a1111_error, a1111_response, openai_response, status_of
from inference.errors import (
    ClientDisconnected,
    GenerationFailed,
    InitImageNotFound,
    InvalidInput,
    ModelNotFound,
    NotReady,
    OutOfMemory,
    QueueFull,
    ShuttingDown,
    WorkerStopped,
)


def _body(response) -> dict:
    return json.loads(response.body)


@pytest.mark.parametrize(
    ("error", "status", "a1111_kind"),
    [
        (GenerationFailed("generation failed: CancelledError"), 500, "GenerationError"),
        (OutOfMemory("out of memory while generating even one image; try a smaller size"), 503, "OutOfMemory"),
        (WorkerStopped("the generation worker is not running"), 503, "WorkerStopped"),
        (QueueFull(7), 429, "QueueFull"),
        (ShuttingDown("the server is shutting down"), 503, "ShuttingDown"),
        (ClientDisconnected("the client closed the request"), 499, "ClientDisconnected"),
        (NotReady("the model is still loading"), 503, "HTTPException"),
        (InitImageNotFound(), 404, "HTTPException"),
        (ModelNotFound("nope", ["a", "b"]), 404, "HTTPException"),
    ],
)
def test_each_domain_error_has_its_status_and_a1111_body(error, status, a1111_kind):
    response = a1111_response(error)
    assert status_of(error) == status and response.status_code == status
    assert _body(response) == {"error": a1111_kind, "detail": str(error), "body": None, "errors": None}


def test_retry_after_goes_with_queue_full_and_shutting_down_only():
    assert a1111_response(QueueFull(7)).headers["retry-after"] == "7"
    assert openai_response(QueueFull(7)).headers["retry-after"] == "7"
    assert a1111_response(ShuttingDown("x")).headers["retry-after"] == "5"
    assert "retry-after" not in a1111_response(GenerationFailed("x")).headers


def test_an_invalid_field_is_fastapi_s_422_for_a1111_and_a_400_naming_openai_s_field():
    error = InvalidInput("width", "must be a multiple of 8, got 65", 65)
    a1111 = a1111_response(error)
    assert a1111.status_code == 422
    assert _body(a1111) == {
        "detail": [
            {"type": "value_error", "loc": ["body", "width"], "msg": "width: must be a multiple of 8, got 65", "input": 65}
        ]
    }
    openai = openai_response(error)
    assert openai.status_code == 400
    assert _body(openai)["error"] == {
        "message": "size: width must be a multiple of 8, got 65", "type": "invalid_request_error", "param": "size", "code": None,
    }


def test_a_nested_field_keeps_its_path():
    error = InvalidInput(("init_images", 0), "is not valid base64")
    assert _body(a1111_response(error))["detail"][0]["loc"] == ["body", "init_images", 0]
    assert str(error) == "init_images.0: is not valid base64"


def test_openai_shapes_for_the_queue_a_missing_model_and_a_failed_batch():
    assert _body(openai_response(QueueFull(3)))["error"]["code"] == "queue_full"
    assert _body(openai_response(QueueFull(3)))["error"]["type"] == "rate_limit_error"
    missing = openai_response(ModelNotFound("nope", ["a"]))
    assert missing.status_code == 404
    assert _body(missing)["error"] | {"message": ""} == {
        "message": "", "type": "invalid_request_error", "param": "model", "code": "model_not_found",
    }
    failed = openai_response(OutOfMemory("try a smaller size"))
    assert failed.status_code == 503 and _body(failed)["error"]["code"] == "OutOfMemory"
    assert _body(openai_response(NotReady("loading")))["error"] == {
        "message": "loading", "type": "server_error", "param": None, "code": None,
    }


def test_the_a1111_body_is_built_in_one_place_for_middleware_and_auth_too():
    response = a1111_error(401, "Unauthorized", "valid HTTP Basic credentials are required", {"WWW-Authenticate": "Basic"})
    assert _body(response) == {
        "error": "Unauthorized", "detail": "valid HTTP Basic credentials are required", "body": None, "errors": None,
    }
    assert response.headers["www-authenticate"] == "Basic"
