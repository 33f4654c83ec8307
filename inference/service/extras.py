"""A1111's "Extras" tab over the API: upscaling one image or a batch.

The work goes through the batcher's queue like a generation (a learned upscaler uses the
same device), as a batch of kind "upscale" whose key carries the `ExtrasSpec`
(engine/extras.py: sizes and blending as A1111's postprocessing_upscale).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..engine.extras import ExtrasSpec
from ..engine.generate import BatchKey, ImageTask
from ..engine.samplers import resolve
from ..engine.upscalers import UnknownUpscalerError
from ..errors import InvalidInput
from ..imaging import MAX_DECODED_PIXELS, decode_image, encode_png, read_parameters
from .runtime import DisconnectCheck, Runtime
from .schemas import NullMeansDefault

# -- request and response shapes (A1111's modules/api/models.py) --------------------------


class ExtrasBaseRequest(NullMeansDefault):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    resize_mode: int = Field(0, ge=0, le=1, description="0: scale by upscaling_resize; 1: to upscaling_resize_w x _h")
    show_extras_results: bool = Field(True, description="accepted; the result is always returned")
    gfpgan_visibility: float = Field(0, ge=0, le=1, description="accepted; no face restoration here")
    codeformer_visibility: float = Field(0, ge=0, le=1, description="accepted; no face restoration here")
    codeformer_weight: float = Field(0, ge=0, le=1)
    upscaling_resize: float = Field(2, ge=1, le=8, description="scale factor (resize_mode 0)")
    upscaling_resize_w: int = Field(512, ge=1, description="target width (resize_mode 1)")
    upscaling_resize_h: int = Field(512, ge=1, description="target height (resize_mode 1)")
    upscaling_crop: bool = Field(True, description="resize_mode 1: crop to exactly the target size")
    upscaler_1: str = Field("None", description="see GET /sdapi/v1/upscalers")
    upscaler_2: str = Field("None", description="blended over upscaler_1 at extras_upscaler_2_visibility")
    extras_upscaler_2_visibility: float = Field(0, ge=0, le=1)
    upscale_first: bool = False


class ExtrasSingleImageRequest(ExtrasBaseRequest):
    image: str = Field("", description="base64 image or data URL")


class FileData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: str = Field(description="base64 image or data URL")
    name: str = Field("", description="file name")


class ExtrasBatchImagesRequest(ExtrasBaseRequest):
    imageList: list[FileData] = Field(default_factory=list, description="the images to process")


class ExtrasSingleImageResponse(BaseModel):
    html_info: str = Field(description="what was done, as A1111's HTML info")
    image: str = Field(description="base64 PNG")


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]


# -- the work -------------------------------------------------------------------------------


class ExtrasService:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    def spec(self, req: ExtrasBaseRequest) -> ExtrasSpec:
        for field in ("upscaler_1", "upscaler_2"):
            try:
                self.runtime.upscalers.check(getattr(req, field))
            except UnknownUpscalerError as error:
                raise InvalidInput(field, str(error), getattr(req, field)) from None
        return ExtrasSpec(
            resize_mode=req.resize_mode,
            scale=req.upscaling_resize,
            width=req.upscaling_resize_w,
            height=req.upscaling_resize_h,
            crop=req.upscaling_crop,
            upscaler_1=req.upscaler_1,
            upscaler_2=req.upscaler_2,
            visibility_2=req.extras_upscaler_2_visibility,
        )

    async def upscale(
        self, req: ExtrasBaseRequest, images: list[tuple[Any, str]], is_disconnected: DisconnectCheck
    ) -> tuple[list[str], str]:
        """`images`: (where in the request, base64) pairs. Returns base64 PNGs and the info."""
        self.runtime.require_started()
        spec = self.spec(req)
        decoded = []
        for field, data in images:
            image = decode_image(data, field)
            width, height = spec.target(image)
            if width * height > MAX_DECODED_PIXELS:
                what = "upscaling_resize_w" if req.resize_mode == 1 else "upscaling_resize"
                raise InvalidInput(what, f"makes a {width}x{height} image from {image.width}x{image.height}; too large")
            decoded.append((image, read_parameters(image)))
        tasks = [ImageTask(prompt="", negative_prompt="", seed=0, init_image=image.convert("RGB")) for image, _ in decoded]
        key = BatchKey(
            model="extras", kind="upscale", width=0, height=0, steps=1, sampler=resolve(None, None),
            cfg_scale=0.0, extras=spec,
        )
        result = await self.runtime.submit_watching_disconnect(key, tasks, is_disconnected)
        encoded = [encode_png(image, decoded[i][1]) for i, image in enumerate(result.images)]
        return encoded, f"<p>{spec.info()}</p>"
