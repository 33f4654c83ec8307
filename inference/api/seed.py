"""The seed API: `/v1/txt2img` and `/v1/img2img` (A1111 bodies; a bare prompt works)."""

from __future__ import annotations

from fastapi import APIRouter

from ..service.schemas import GenerationResponse, Img2ImgRequest, Txt2ImgRequest
from .dependencies import DisconnectCheckDep, GenerationServiceDep
from .json_body import BoundedJSONRoute
from .responses import A1111_ERRORS

router = APIRouter(prefix="/v1", tags=["seed API"], route_class=BoundedJSONRoute, responses=A1111_ERRORS)


@router.post("/txt2img", response_model=GenerationResponse, summary="Text to image")
async def txt2img(
    body: Txt2ImgRequest, service: GenerationServiceDep, is_disconnected: DisconnectCheckDep
) -> GenerationResponse:
    return await service.generate(body, is_disconnected)


@router.post("/img2img", response_model=GenerationResponse, summary="Image to image (and inpainting with a mask)")
async def img2img(
    body: Img2ImgRequest, service: GenerationServiceDep, is_disconnected: DisconnectCheckDep
) -> GenerationResponse:
    return await service.generate(body, is_disconnected)
