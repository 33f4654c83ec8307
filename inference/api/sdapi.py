"""AUTOMATIC1111's `/sdapi/v1` API: generation, progress, interrupt, options, png-info.

The read-only catalogue routes (sd-models, samplers, memory, ...) are in `sdapi_catalog`.
Generation goes through the same `GenerationService` as the seed API.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field

from ..engine.registry import UnknownModelError
from ..imaging import ImageInputError, decode_image, read_parameters
from ..infotext import parse_infotext
from .dependencies import GenerationServiceDep, RuntimeDep
from .generation import field_error
from .schemas import GenerationResponse, Img2ImgRequest, Txt2ImgRequest

router = APIRouter(prefix="/sdapi/v1", tags=["AUTOMATIC1111 API"])

# PIL `info` keys that describe the file, not its generation; A1111 drops them too.
_IGNORED_INFO_KEYS = frozenset(
    {"parameters", "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "exif", "loop", "background",
     "timestamp", "duration", "progressive", "progression", "icc_profile", "chromaticity", "photoshop", "gamma",
     "srgb", "transparency", "aspect"}
)


@dataclass
class SdapiState:
    """What A1111 keeps in its global `shared.state` / `shared.opts` that we need here."""

    # Options set by POST /options that we do not act on; GET /options echoes them back.
    stored_options: dict[str, Any] = field(default_factory=dict)
    # `started_at` of the batch that was interrupted (A1111 reports `interrupted` until the next job).
    interrupted_batch: float | None = None
    skipped_batch: float | None = None


def get_state(request: Request) -> SdapiState:
    state = getattr(request.app.state, "sdapi", None)
    if state is None:
        state = request.app.state.sdapi = SdapiState()
    return state


def checkpoint_sha256(name: str) -> str:
    """Stands in for A1111's file hash; its first 10 digits are `LoadedModel.short_hash`."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


# -- generation ----------------------------------------------------------------------


def _begin_job(request: Request, service) -> None:
    # A1111's state.begin(): a new job clears the interrupted/skipped flags of the last one.
    batcher = service.runtime.batcher
    if batcher is None or batcher.depth == 0:
        state = get_state(request)
        state.interrupted_batch = state.skipped_batch = None


@router.post("/txt2img", response_model=GenerationResponse, summary="Text to image (A1111)")
async def txt2img(body: Txt2ImgRequest, request: Request, service: GenerationServiceDep) -> GenerationResponse:
    _begin_job(request, service)
    return await service.generate(body, request)


@router.post("/img2img", response_model=GenerationResponse, summary="Image to image and inpainting (A1111)")
async def img2img(body: Img2ImgRequest, request: Request, service: GenerationServiceDep) -> GenerationResponse:
    _begin_job(request, service)
    return await service.generate(body, request)


# -- progress and control ------------------------------------------------------------


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    stopping_generation: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressResponse(BaseModel):
    progress: float = Field(description="0..1 of the running batch")
    eta_relative: float = Field(description="estimated seconds left")
    state: ProgressState
    current_image: str | None = Field(None, description="live previews are not produced: always null")
    textinfo: str | None = None


@router.get("/progress", response_model=ProgressResponse, summary="Progress of the running generation")
async def progress(request: Request, runtime: RuntimeDep, skip_current_image: bool = False) -> ProgressResponse:
    state = get_state(request)
    batcher = runtime.batcher
    current = batcher.progress if batcher is not None else None
    if current is None or not current.active:
        queued = batcher.depth if batcher is not None else 0
        return ProgressResponse(
            progress=0.0,
            eta_relative=0.0,
            state=ProgressState(
                interrupted=state.interrupted_batch is not None, skipped=state.skipped_batch is not None
            ),
            textinfo=f"Waiting: {queued} request(s) queued" if queued else None,
        )
    # A new batch clears the flags of the one before, as A1111's state.begin() does.
    if state.interrupted_batch not in (None, current.started_at):
        state.interrupted_batch = None
    if state.skipped_batch not in (None, current.started_at):
        state.skipped_batch = None
    fraction = current.fraction
    elapsed = max(0.0, time.time() - current.started_at)
    eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
    return ProgressResponse(
        progress=round(fraction, 4),
        eta_relative=round(eta, 3),
        state=ProgressState(
            interrupted=state.interrupted_batch is not None,
            skipped=state.skipped_batch is not None,
            job="generate",
            job_count=current.job_count,
            job_timestamp=time.strftime("%Y%m%d%H%M%S", time.localtime(current.started_at)),
            sampling_step=current.step,
            sampling_steps=current.total_steps,
        ),
        textinfo=f"Step {current.step}/{current.total_steps}, {current.images_total} image(s) in this batch",
    )


def _stop_running_batch(request: Request, runtime, flag: str) -> bool:
    """Records which batch was stopped; False when nothing runs (A1111 then does nothing)."""
    batcher = runtime.batcher
    if batcher is None or not batcher.progress.active:
        return False
    setattr(get_state(request), flag, batcher.progress.started_at)
    return True


@router.post("/interrupt", summary="Stop the running generation; its request returns the images made so far")
async def interrupt(request: Request, runtime: RuntimeDep) -> dict:
    if _stop_running_batch(request, runtime, "interrupted_batch"):
        runtime.batcher.interrupt()
    return {}


@router.post(
    "/skip",
    summary="Skip the running batch and go on with the next",
    description="As A1111's skip: the running pipeline call stops after its current step and its "
    "images come back as far as they got; a request with more images (n_iter) goes on with its next "
    "batch. The batch is all images sampled together in one call, so every request in it is skipped.",
)
async def skip(request: Request, runtime: RuntimeDep) -> None:
    if _stop_running_batch(request, runtime, "skipped_batch"):
        runtime.batcher.skip()
    return None


# -- options -------------------------------------------------------------------------


def current_options(checkpoint: str, stored: dict[str, Any], loaded_limit: int) -> dict[str, Any]:
    options = {
        "samples_format": "png",
        "sd_vae": "Automatic",
        "CLIP_stop_at_last_layers": 1,
        "eta_noise_seed_delta": 0,
        "live_previews_enable": False,
        "enable_pnginfo": True,
        "save_images_add_number": True,
        "sd_checkpoints_limit": loaded_limit,
    }
    options.update(stored)
    # Always the truth, whatever was posted.
    options["sd_model_checkpoint"] = checkpoint
    options["sd_checkpoint_hash"] = checkpoint_sha256(checkpoint)
    return options


@router.get("/options", summary="Server options; sd_model_checkpoint is the current checkpoint")
async def get_options(request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    runtime.require_started()
    stored = get_state(request).stored_options
    return current_options(runtime.current_model, stored, runtime.settings.max_loaded_models)


@router.post(
    "/options",
    summary="Set options",
    description="`sd_model_checkpoint` selects one of GET sd-models (loaded before this returns, as in "
    "A1111); later requests use it unless they override it. Other options are stored and echoed by GET, "
    "not acted on.",
)
async def set_options(request: Request, runtime: RuntimeDep, body: dict[str, Any] = Body(...)) -> None:
    wanted = body.get("sd_model_checkpoint")
    if wanted is not None:
        try:
            await runtime.select_model(str(wanted))
        except UnknownModelError as error:
            raise field_error("sd_model_checkpoint", str(error), wanted) from None
    stored = get_state(request).stored_options
    stored.update({k: v for k, v in body.items() if k not in ("sd_model_checkpoint", "sd_checkpoint_hash")})
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
    try:
        image = decode_image(body.image, "image")
    except ImageInputError as error:
        raise field_error("image", str(error)) from None
    text = read_parameters(image) or ""
    items = {
        key: value
        for key, value in (image.info or {}).items()
        if key not in _IGNORED_INFO_KEYS and isinstance(value, (str, int, float))
    }
    return PngInfoResponse(info=text, items=items, parameters=parse_infotext(text) if text else {})
