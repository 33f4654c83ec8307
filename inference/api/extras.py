"""A1111's Extras routes: `/sdapi/v1/extra-single-image`, `/extra-batch-images`, and the
upscaler lists (`/upscalers`, `/latent-upscale-modes`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..engine.hires import LATENT_UPSCALE_MODES
from ..engine.upscalers import RESAMPLING
from ..errors import InvalidInput
from ..service.extras import (
    ExtrasBatchImagesRequest,
    ExtrasBatchImagesResponse,
    ExtrasService,
    ExtrasSingleImageRequest,
    ExtrasSingleImageResponse,
)
from .dependencies import A1111StateDep, DisconnectCheckDep, RuntimeDep
from .json_body import BoundedJSONRoute
from .responses import A1111_ERRORS

router = APIRouter(
    prefix="/sdapi/v1", tags=["AUTOMATIC1111 API"], route_class=BoundedJSONRoute, responses=A1111_ERRORS
)


@router.post("/extra-single-image", response_model=ExtrasSingleImageResponse, summary="Upscale one image (A1111 Extras)")
async def extra_single_image(
    body: ExtrasSingleImageRequest, runtime: RuntimeDep, state: A1111StateDep, is_disconnected: DisconnectCheckDep
) -> ExtrasSingleImageResponse:
    if not body.image:
        raise InvalidInput("image", "is required: a base64 image or data URL")
    state.begin_job()
    images, info = await ExtrasService(runtime).upscale(body, [("image", body.image)], is_disconnected)
    return ExtrasSingleImageResponse(html_info=info, image=images[0])


@router.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse, summary="Upscale several images (A1111 Extras)")
async def extra_batch_images(
    body: ExtrasBatchImagesRequest, runtime: RuntimeDep, state: A1111StateDep, is_disconnected: DisconnectCheckDep
) -> ExtrasBatchImagesResponse:
    if not body.imageList:
        raise InvalidInput("imageList", "is empty: send at least one {data, name}")
    state.begin_job()
    sources = [(("imageList", index, "data"), item.data) for index, item in enumerate(body.imageList)]
    images, info = await ExtrasService(runtime).upscale(body, sources, is_disconnected)
    return ExtrasBatchImagesResponse(html_info=info, images=images)


@router.get("/upscalers", summary="Image upscalers: resampling filters and the learned ones (--upscaler)")
async def upscalers(runtime: RuntimeDep) -> list[dict[str, Any]]:
    listed = [
        {"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4} for name in RESAMPLING
    ]
    for name, spec in runtime.upscalers.specs.items():
        listed.append(
            {"name": name, "model_name": "ESRGAN", "model_path": spec.pinned_source, "model_url": None,
             "scale": runtime.upscalers.scale_of(name) or 4}
        )
    return listed


@router.get("/latent-upscale-modes", summary="The hires fix's latent upscalers")
async def latent_upscale_modes() -> list[dict[str, str]]:
    return [{"name": name} for name in LATENT_UPSCALE_MODES]
