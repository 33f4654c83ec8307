"""What a generation answers: A1111's `info`, the infotext of each image, the PNGs.

Every dialect describes its images through these, so `png-info` reads the same fields
back whichever API made the image.
"""

from __future__ import annotations

import json
import time

from ..engine.generate import BatchKey
from ..engine.loading import LoadedModel
from ..engine.samplers import AUTOMATIC
from ..infotext import format_infotext
from .schemas import GenerationRequest, GenerationResponse, Img2ImgRequest, Txt2ImgRequest

VERSION = "stable-diffusion-k8s 0.1.0"


def describe(
    req: GenerationRequest,
    model: LoadedModel,
    key: BatchKey,
    seeds: list[int],
    subseeds: list[int],
    infotexts: list[str],
    encoded: list[str],
    *,
    interrupted: bool = False,
) -> GenerationResponse:
    """A1111's response: `encoded` (the PNGs as base64, made with `infotexts`) and `info`,
    a JSON string."""
    info = {
        "prompt": req.prompt,
        "all_prompts": [req.prompt] * len(seeds),
        "negative_prompt": req.negative_prompt,
        "all_negative_prompts": [req.negative_prompt] * len(seeds),
        "seed": seeds[0],
        "all_seeds": seeds,
        "subseed": subseeds[0],
        "all_subseeds": subseeds,
        "subseed_strength": req.subseed_strength,
        "width": key.width,
        "height": key.height,
        "sampler_name": key.sampler.sampler,
        "scheduler": key.sampler.schedule,
        "cfg_scale": key.cfg_scale,
        "steps": key.steps,
        "batch_size": req.batch_size,
        "n_iter": req.n_iter,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": model.title,
        "sd_model_hash": model.short_hash,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": req.seed_resize_from_w,
        "seed_resize_from_h": req.seed_resize_from_h,
        "denoising_strength": key.hires.denoising_strength if key.hires else key.denoising_strength,
        "extra_generation_params": {
            **({"LoRA": _adapters_text(key)} if key.adapters else {}),
            **_hires_fields(req, key),
        },
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": req.styles,
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
        "clip_skip": 1,
        "is_using_inpainting_conditioning": False,
        "version": VERSION,
    }
    if interrupted:
        # Not an A1111 key (A1111 only says so in /progress); clients ignore it.
        info["interrupted"] = True
    parameters = req.model_dump(mode="json")
    if isinstance(req, Img2ImgRequest) and not req.include_init_images:
        parameters["init_images"] = None
        parameters["mask"] = None
    return GenerationResponse(images=encoded if req.send_images else [], parameters=parameters, info=json.dumps(info))


def infotext(req: GenerationRequest, model: LoadedModel, key: BatchKey, seed: int, subseed: int = 0) -> str:
    """One image's A1111 `parameters` text (PNG chunk and `info.infotexts`)."""
    varied = req.subseed_strength > 0
    resized = req.seed_resize_from_w > 0 and req.seed_resize_from_h > 0
    fields = {
        "Steps": key.steps,
        "Sampler": key.sampler.sampler,
        "Schedule type": None if key.sampler.schedule == AUTOMATIC else key.sampler.schedule,
        "CFG scale": _number(key.cfg_scale),
        "Seed": seed,
        "Size": f"{key.width}x{key.height}",
        "Model hash": model.short_hash,
        "Model": model.title,
        "Variation seed": subseed if varied else None,
        "Variation seed strength": _number(req.subseed_strength) if varied else None,
        "Seed resize from": f"{req.seed_resize_from_w}x{req.seed_resize_from_h}" if resized else None,
        "Denoising strength": key.hires.denoising_strength if key.hires else key.denoising_strength,
        **_hires_fields(req, key),
        "LoRA": _adapters_text(key) if key.adapters else None,
        "Version": VERSION,
    }
    return format_infotext(req.prompt, req.negative_prompt, fields)


def _hires_fields(req: GenerationRequest, key: BatchKey) -> dict:
    """The hires fix's infotext fields, with A1111's keys and conditions."""
    hires = key.hires
    if hires is None or not isinstance(req, Txt2ImgRequest):
        return {}
    fields: dict = {}
    if req.hr_resize_x == 0 and req.hr_resize_y == 0:
        fields["Hires upscale"] = _number(req.hr_scale)
    else:
        fields["Hires resize"] = f"{req.hr_resize_x}x{req.hr_resize_y}"
    if req.hr_second_pass_steps:
        fields["Hires steps"] = req.hr_second_pass_steps
    fields["Hires upscaler"] = hires.upscaler
    if hires.sampler.sampler != key.sampler.sampler:
        fields["Hires sampler"] = hires.sampler.sampler
    if req.hr_prompt and req.hr_prompt != req.prompt:
        fields["Hires prompt"] = req.hr_prompt
    if req.hr_negative_prompt and req.hr_negative_prompt != req.negative_prompt:
        fields["Hires negative prompt"] = req.hr_negative_prompt
    return fields


def _adapters_text(key: BatchKey) -> str:
    return ", ".join(
        f"{name}:{_number(te)}" + ("" if unet == te else f":{_number(unet)}") for name, te, unet in key.adapters
    )


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value

