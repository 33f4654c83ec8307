"""AUTOMATIC1111's `/sdapi/v1` API: generation, progress, interrupt, options, png-info.

The read-only catalogue routes (sd-models, samplers, memory, ...) are in `sdapi_catalog`.
Generation goes through the same `GenerationService` as the seed API.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field

from ..imaging import decode_image, read_parameters
from ..infotext import parse_infotext
from ..service.peers import LOCAL_ONLY_HEADER, PEER_TOKEN_HEADER, SWITCH_STAMP_HEADER
from ..service.replica_progress import ProgressResponse
from ..service.schemas import GenerationResponse, Img2ImgRequest, Txt2ImgRequest
from .dependencies import A1111StateDep, CheckpointDep, DisconnectCheckDep, GenerationServiceDep, ProgressDep
from .json_body import BoundedJSONRoute
from .responses import A1111_ERRORS

PREFIX = "/sdapi/v1"
# Where replicas read and switch each other's checkpoint (service/replica_checkpoint.py).
OPTIONS_PATH = f"{PREFIX}/options"
# Where replicas read each other's progress and stop each other's running batch
# (service/replica_progress.py).
PROGRESS_PATH = f"{PREFIX}/progress"
INTERRUPT_PATH = f"{PREFIX}/interrupt"
SKIP_PATH = f"{PREFIX}/skip"

router = APIRouter(
    prefix=PREFIX, tags=["AUTOMATIC1111 API"], route_class=BoundedJSONRoute, responses=A1111_ERRORS
)

# PIL `info` keys that describe the file, not its generation; A1111 drops them too.
_IGNORED_INFO_KEYS = frozenset(
    {"parameters", "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "exif", "loop", "background",
     "timestamp", "duration", "progressive", "progression", "icc_profile", "chromaticity", "photoshop", "gamma",
     "srgb", "transparency", "aspect"}
)


# -- generation ----------------------------------------------------------------------


@router.post("/txt2img", response_model=GenerationResponse, summary="Text to image (A1111)")
async def txt2img(
    body: Txt2ImgRequest, service: GenerationServiceDep, state: A1111StateDep, is_disconnected: DisconnectCheckDep
) -> GenerationResponse:
    state.begin_job()
    return await service.generate(body, is_disconnected)


@router.post("/img2img", response_model=GenerationResponse, summary="Image to image and inpainting (A1111)")
async def img2img(
    body: Img2ImgRequest, service: GenerationServiceDep, state: A1111StateDep, is_disconnected: DisconnectCheckDep
) -> GenerationResponse:
    state.begin_job()
    return await service.generate(body, is_disconnected)


# -- progress and control ------------------------------------------------------------


@router.get("/progress", response_model=ProgressResponse, summary="Progress of the running generation",
            description="With --peers, an idle replica answers with the running job of another replica "
            "(the one that started first), unless sent with x-sd-local-only.")
async def progress(request: Request, control: ProgressDep, skip_current_image: bool = False) -> ProgressResponse:
    # An idle replica asks the others (service/replica_progress.py), with the client's credentials.
    return await control.progress(
        authorization=request.headers.get("authorization"), local_only=LOCAL_ONLY_HEADER in request.headers
    )


@router.post(
    "/interrupt",
    summary="Stop the running generation; its request returns the images made so far",
    description="With --peers, the running batch of every replica is stopped (unless sent with x-sd-local-only).",
)
async def interrupt(request: Request, control: ProgressDep) -> dict:
    await control.interrupt(
        authorization=request.headers.get("authorization"), local_only=LOCAL_ONLY_HEADER in request.headers
    )
    return {}


@router.post(
    "/skip",
    summary="Skip the running batch and go on with the next",
    description="As A1111's skip: the running pipeline call stops after its current step and its "
    "images come back as far as they got; a request with more images (n_iter) goes on with its next "
    "batch. The batch is all images sampled together in one call, so every request in it is skipped. "
    "With --peers, the running batch of every replica is skipped (unless sent with x-sd-local-only).",
)
async def skip(request: Request, control: ProgressDep) -> None:
    await control.skip(
        authorization=request.headers.get("authorization"), local_only=LOCAL_ONLY_HEADER in request.headers
    )
    return None


# -- options -------------------------------------------------------------------------


@router.get("/options", summary="Server options; sd_model_checkpoint is the current checkpoint")
async def get_options(request: Request, checkpoint: CheckpointDep) -> dict[str, Any]:
    # A replica's local-only read also gets the checkpoint's switch stamp (service/replica_checkpoint.py).
    return checkpoint.options(local_only=LOCAL_ONLY_HEADER in request.headers)


@router.post(
    "/options",
    summary="Set options",
    description="`sd_model_checkpoint` selects one of GET sd-models (loaded before this returns, as in "
    "A1111); later requests use it unless they override it. With --peers every replica switches too "
    "(unless sent with x-sd-local-only). Other options are stored and echoed by GET, not acted on.",
)
async def set_options(request: Request, checkpoint: CheckpointDep, body: dict[str, Any] = Body(...)) -> None:
    # The other replicas are told with the client's credentials; a forwarded switch's
    # stamp counts only with the replicas' token (service/replica_checkpoint.py).
    await checkpoint.set_options(
        body, authorization=request.headers.get("authorization"), local_only=LOCAL_ONLY_HEADER in request.headers,
        stamp=request.headers.get(SWITCH_STAMP_HEADER), peer_token=request.headers.get(PEER_TOKEN_HEADER),
    )
    return None


# -- png-info ------------------------------------------------------------------------


class PngInfoRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    image: str = Field(description="base64 image or data URL")


class PngInfoResponse(BaseModel):
    info: str = Field(description="the `parameters` text (infotext), empty if the image has none")
    items: dict[str, Any] = Field(description="other text chunks of the image")
    parameters: dict[str, Any] = Field(description="the infotext parsed into fields")


@router.post("/png-info", response_model=PngInfoResponse, summary="Read the generation parameters stored in an image")
async def png_info(body: PngInfoRequest) -> PngInfoResponse:
    image = decode_image(body.image, "image")
    text = read_parameters(image) or ""
    items = {
        key: value
        for key, value in (image.info or {}).items()
        # PIL's info keys may be tuples (a decoder's own fields); only named chunks are items.
        if isinstance(key, str) and key not in _IGNORED_INFO_KEYS and isinstance(value, (str, int, float))
    }
    return PngInfoResponse(info=text, items=items, parameters=parse_infotext(text) if text else {})
