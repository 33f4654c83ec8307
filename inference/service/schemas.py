"""Request and response models of the generation endpoints (A1111's shapes).

Unknown fields are ignored, as A1111 does, so clients written for newer or older A1111
versions keep working. Fields that only make sense inside A1111's UI process (scripts,
face restoration, saving to disk) are accepted and recorded but have no effect here.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

# Free-form fields (override_settings, scripts) are echoed back in `parameters`; deeper
# JSON than this fails to serialise there (pydantic stops at its recursion limit), and no
# A1111 script needs more than a few levels.
MAX_FREE_FORM_DEPTH = 32


def check_free_form(value: Any, max_depth: int = MAX_FREE_FORM_DEPTH) -> Any:
    """A JSON value no deeper than `max_depth`, whose numbers are finite (JSON has no NaN
    or infinity, which Python's parser accepts); ValueError otherwise. Iterative, so a
    deep value cannot exhaust the stack."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"numbers must be finite, got {item}")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        if children and depth >= max_depth:
            raise ValueError(f"is nested more than {max_depth} levels deep")
        pending.extend((child, depth + 1) for child in children)
    return value


@cache  # per request model class: its fields never change, and this runs on every request
def _request_keys(model: type[BaseModel]) -> dict[str, str]:
    """Every key a client may send (field names and aliases) -> the field's name."""
    keys = {}
    for name, info in model.model_fields.items():
        keys[name] = name
        alias = info.validation_alias
        for choice in alias.choices if isinstance(alias, AliasChoices) else ([alias] if alias else []):
            if isinstance(choice, str):
                keys[choice] = name
    return keys


class NullMeansDefault(BaseModel):
    """A1111 declares every generation field Optional: `"seed": null`, `"styles": null` or
    `"init_images": null` are accepted and mean the default. Here too, instead of a 422."""

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        keys = _request_keys(cls)
        fields = cls.model_fields
        return {
            key: value
            for key, value in data.items()
            if value is not None
            or key not in keys
            or (fields[keys[key]].default is None and fields[keys[key]].default_factory is None)
        }


class GenerationRequest(NullMeansDefault):
    # NaN and infinity pass `ge`/`le` checks and would fail later, as a 500.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, allow_inf_nan=False)

    prompt: str = Field("", description="what to draw")
    negative_prompt: str = Field("", description="what to avoid")
    styles: list[str] = Field(default_factory=list, description="accepted for compatibility; no styles are stored")
    seed: int = Field(-1, ge=-1, le=2**32 - 1, description="-1 picks a random seed; image i uses seed + i")
    subseed: int = Field(-1, ge=-1, le=2**32 - 1, description="variation seed; -1 picks one at random")
    subseed_strength: float = Field(
        0.0, ge=0, le=1, description="0: the seed's image, 1: the subseed's; in between a slerp of their noises"
    )
    seed_resize_from_w: int = Field(-1, ge=-1, description="draw the seed's noise at this width (>0 with seed_resize_from_h)")
    seed_resize_from_h: int = Field(-1, ge=-1, description="draw the seed's noise at this height")
    sampler_name: str | None = Field(None, description="A1111 sampler name, see GET /sdapi/v1/samplers")
    sampler_index: str | None = Field(None, description="legacy alias of sampler_name")
    scheduler: str | None = Field(None, description="schedule type (automatic, karras, ...), see GET /sdapi/v1/schedulers")
    batch_size: int = Field(1, ge=1, description="images per pipeline call")
    n_iter: int = Field(1, ge=1, description="number of batches")
    steps: int = Field(20, ge=1, description="denoising steps")
    cfg_scale: float = Field(
        7.0, ge=0, le=50, validation_alias=AliasChoices("cfg_scale", "cfgScale"), description="classifier-free guidance scale"
    )
    width: int | None = Field(None, ge=8, description="pixels, multiple of 8; default: the model's native size")
    height: int | None = Field(None, ge=8, description="pixels, multiple of 8; default: the model's native size")
    denoising_strength: float | None = Field(None, ge=0, le=1)
    restore_faces: bool | None = None
    tiling: bool | None = None
    eta: float | None = None
    override_settings: dict[str, Any] = Field(default_factory=dict)
    override_settings_restore_afterwards: bool = True
    send_images: bool = Field(True, description="return the images in the response")
    save_images: bool = Field(False, description="keep the images in the server's recent history")
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)

    @field_validator("override_settings", "alwayson_scripts", "script_args")
    @classmethod
    def _bounded_free_form(cls, value: Any) -> Any:
        return check_free_form(value)


class Txt2ImgRequest(GenerationRequest):
    enable_hr: bool = Field(False, description="hires fix: upscale the first pass and denoise it again at the hires size")
    hr_scale: float = Field(2.0, gt=0, le=8, description="hires size = size x hr_scale (unless hr_resize_x/y are set)")
    hr_resize_x: int = Field(0, ge=0, description="hires width; 0: from hr_resize_y's aspect, or hr_scale")
    hr_resize_y: int = Field(0, ge=0, description="hires height; 0: from hr_resize_x's aspect, or hr_scale")
    hr_upscaler: str | None = Field(
        None, description="Latent (default), Latent (nearest), ... or an image upscaler of GET /sdapi/v1/upscalers"
    )
    hr_second_pass_steps: int = Field(0, ge=0, description="steps of the second pass; 0: the same as steps")
    hr_sampler_name: str | None = Field(None, description="sampler of the second pass; default: sampler_name")
    hr_scheduler: str | None = None
    hr_prompt: str = Field("", description="prompt of the second pass; empty: prompt")
    hr_negative_prompt: str = Field("", description="negative prompt of the second pass; empty: negative_prompt")
    hr_checkpoint_name: str | None = Field(None, description="only the request's own checkpoint is supported")
    firstphase_width: int = Field(0, description="legacy; ignored, as in A1111")
    firstphase_height: int = Field(0, description="legacy; ignored, as in A1111")


class Img2ImgRequest(GenerationRequest):
    init_images: list[str] = Field(default_factory=list, description="base64 images or data URLs")
    mask: str | None = Field(None, description="base64 mask: white is repainted (inpainting)")
    denoising_strength: float = Field(0.75, ge=0, le=1)
    resize_mode: int = Field(0, ge=0, le=3, description="0 resize, 1 crop and resize, 2 resize and fill, 3 as 0")
    image_cfg_scale: float | None = None
    mask_blur: int = Field(4, ge=0, le=64)
    mask_blur_x: int | None = None
    mask_blur_y: int | None = None
    inpainting_fill: int = Field(
        0, ge=0, le=3, description="masked area starts from: 0 fill, 1 original, 2 latent noise, 3 latent nothing"
    )
    inpaint_full_res: bool = Field(True, description="inpaint only the masked region, at full resolution, pasted back")
    inpaint_full_res_padding: int = Field(0, ge=0, le=1024, description="pixels of context around the masked region")
    inpainting_mask_invert: int = Field(0, ge=0, le=1, description="1: repaint the black part of the mask")
    initial_noise_multiplier: float | None = None
    include_init_images: bool = Field(False, description="echo init_images and mask back in `parameters`")


class GenerationResponse(BaseModel):
    images: list[str] = Field(description="base64 PNG images, without a data: prefix")
    parameters: dict[str, Any] = Field(description="the request as understood")
    info: str = Field(description="JSON string with the generation info (seeds, infotexts, ...)")

