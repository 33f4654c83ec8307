"""OpenAI's images API: `POST /v1/images/generations`, `GET /v1/models`.

Generation goes through the same `GenerationService` as the other dialects. Errors use
OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`), which the `openai`
client turns into `BadRequestError` & co. with a readable message. Besides OpenAI's
fields, a request may carry `negative_prompt`, `steps`, `cfg_scale`, `seed` and
`sampler_name` (the client's `extra_body`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ClientDisconnected, InvalidInput, ModelNotFound, ServiceError
from ..service.peers import LOCAL_ONLY_HEADER
from ..service.schemas import NullMeansDefault, Txt2ImgRequest
from .dependencies import (
    DisconnectCheckDep,
    GenerationServiceDep,
    ImageLinksDep,
    RuntimeDep,
)
from .errors import openai_http_error, openai_response, openai_validation_error
from .json_body import BoundedJSONRoute
from .responses import OPENAI_ERRORS

# Names OpenAI clients send by default; they select this server's model, as any client
# written for OpenAI would otherwise need code changes.
OPENAI_MODEL_NAMES = frozenset({"dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5"})
# A model's `created` in OpenAI's listing; a served checkpoint has no better date.
_SERVING_SINCE = int(time.time())


class OpenAIErrorRoute(BoundedJSONRoute):
    """Answers this router's errors in OpenAI's shape instead of A1111's (bodies parsed as
    `BoundedJSONRoute` does)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                return openai_validation_error(error.errors()[0])
            except StarletteHTTPException as error:  # FastAPI's own (a body that is not JSON) too
                return openai_http_error(error)
            except ClientDisconnected:
                raise  # nobody reads the answer; the app's handler logs it
            except ServiceError as error:
                return openai_response(error)

        return handle


router = APIRouter(prefix="/v1", tags=["OpenAI images"], route_class=OpenAIErrorRoute, responses=OPENAI_ERRORS)


class ImageGenerationRequest(NullMeansDefault):
    # OpenAI's optional fields are nullable (`"n": null` is n=1); NaN would fail later as a 500.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    prompt: str = Field(min_length=1, description="what to draw")
    model: str | None = Field(None, description="this server's model id (GET /v1/models) or an OpenAI image model name")
    n: int = Field(1, ge=1, le=10, description="number of images")
    size: str | None = Field("auto", description="WxH in pixels (multiples of 8), or auto for the model's native size")
    response_format: Literal["b64_json", "url"] | None = Field("b64_json", description="url: served here for a limited time")
    quality: str | None = None
    style: str | None = None
    user: str | None = None
    stream: bool | None = Field(None, description="streaming (partial images) is not supported: false or omitted")
    negative_prompt: str = ""
    steps: int | None = Field(None, ge=1)
    cfg_scale: float | None = Field(None, ge=0, le=50)
    seed: int = Field(-1, ge=-1, le=2**32 - 1)
    sampler_name: str | None = None


class ImageData(BaseModel):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]
    output_format: str = "png"


def _size(value: str | None) -> tuple[int | None, int | None]:
    if value in (None, "", "auto"):
        return None, None
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", value)
    if not match:
        raise InvalidInput("size", f"must be 'WIDTHxHEIGHT' (for example 512x512) or 'auto', got {_shown(value)}", _shown(value))
    # A side of more digits than any size has is refused as text: int() of thousands of
    # digits is slow, and past 4,300 digits Python refuses to convert (or print) it.
    for side in (match[1], match[2]):
        if len(side.lstrip("0")) > _MAX_SIDE_DIGITS:
            raise InvalidInput("size", f"{_shown(side)} pixels is far larger than any size this server makes", _shown(value))
    return int(match[1]), int(match[2])


def image_link_base(request: Request, public_url: str | None) -> str:
    """Where `response_format: url` links point: the configured public URL, else the
    address this connection arrived on. Never the request's Host header, which the
    client writes (a link to any host it likes)."""
    if public_url:
        return public_url
    root = request.scope.get("root_path", "")
    if not request.scope.get("server"):
        return root  # a Unix socket: a link relative to this server
    host, port = request.scope["server"]
    if ":" in host:
        host = f"[{host}]"
    return f"{request.scope['scheme']}://{host}:{port}{root}"


_MAX_SIDE_DIGITS = 6


def _shown(text: str, limit: int = 40) -> str:
    """A client's text in an error message, cut short: an error never echoes a megabyte."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


@router.post(
    "/images/generations",
    response_model=ImagesResponse,
    response_model_exclude_none=True,
    summary="Create images from a prompt (OpenAI images API)",
)
async def generate_images(
    body: ImageGenerationRequest,
    request: Request,
    runtime: RuntimeDep,
    service: GenerationServiceDep,
    image_links: ImageLinksDep,
    is_disconnected: DisconnectCheckDep,
) -> ImagesResponse:
    if body.stream:
        # Answering JSON to a client that waits for server-sent events would look like an
        # empty stream, not an error.
        raise InvalidInput("stream", "streaming is not supported by this server; omit stream or set it to false", True)
    runtime.require_started()
    fields: dict[str, Any] = {}
    if body.model and body.model not in OPENAI_MODEL_NAMES:  # OpenAI's own names mean "the current one"
        try:
            fields["override_settings"] = {"sd_model_checkpoint": runtime.require_registry().resolve(body.model)}
        except ModelNotFound as error:
            raise InvalidInput("model", str(error), body.model) from None
    width, height = _size(body.size)
    fields.update(
        prompt=body.prompt, negative_prompt=body.negative_prompt, batch_size=body.n, width=width, height=height,
        seed=body.seed, sampler_name=body.sampler_name,
    )
    if body.steps is not None:
        fields["steps"] = body.steps
    if body.cfg_scale is not None:
        fields["cfg_scale"] = body.cfg_scale
    try:
        txt2img = Txt2ImgRequest(**fields)
    except ValidationError as error:  # e.g. size 0x0: a 400 naming size, not a 500
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in error.errors()]) from None
    result = await service.generate(txt2img, is_disconnected)
    if body.response_format == "url":
        base = image_link_base(request, runtime.settings.public_url)
        data = [
            ImageData(url=base + request.app.url_path_for("openai_image_file", image_id=image_links.put_base64(image)))
            for image in result.images
        ]
    else:
        data = [ImageData(b64_json=image) for image in result.images]
    return ImagesResponse(created=int(time.time()), data=data)


@router.get(
    "/images/files/{image_id}.png",
    name="openai_image_file",
    summary="An image made for a `response_format: url` request (kept for --image-url-ttl-seconds)",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 404: {"description": "unknown or expired"}},
)
async def image_file(image_id: str, request: Request, image_links: ImageLinksDep) -> Response:
    # Another replica's link is fetched from it (service/peers.py), with the client's credentials.
    png = await image_links.find(
        image_id,
        request.app.url_path_for("openai_image_file", image_id=image_id),
        authorization=request.headers.get("authorization"),
        local_only=LOCAL_ONLY_HEADER in request.headers,
    )
    if png is None:
        raise HTTPException(404, "this image link is unknown or has expired")
    ttl = image_links.ttl_seconds
    return Response(png, media_type="image/png", headers={"Cache-Control": f"private, max-age={int(ttl)}"})


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": _SERVING_SINCE, "owned_by": "stable-diffusion-k8s"}


@router.get("/models", summary="The checkpoints this server offers, the default first (OpenAI models API)")
async def list_models(runtime: RuntimeDep) -> dict[str, Any]:
    runtime.require_started()
    return {"object": "list", "data": [_model_entry(ref.name) for ref in runtime.checkpoints()]}


@router.get("/models/{model_id:path}", summary="One model (OpenAI models API)")
async def get_model(model_id: str, runtime: RuntimeDep) -> dict[str, Any]:
    runtime.require_started()
    # An unknown id raises ModelNotFound: OpenAI's 404 `model_not_found`.
    return _model_entry(runtime.require_registry().resolve(model_id))
