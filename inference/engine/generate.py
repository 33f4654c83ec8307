"""Running one batch of compatible image tasks through a pipeline.

A batch is a list of `ImageTask`s that share a `BatchKey` (everything that must be equal
for one pipeline call). Each task has its own seed and its own `torch.Generator`, so the
initial noise of an image does not depend on what it was batched with. Generators live on
the CPU, which also makes a seed give the same noise on a CPU and a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

from PIL import Image

from .hires import HiresSpec, decode_latents, pass_strength, stretched_steps, upscale_latents
from .inpaint import latent_fill, paste_back, pipeline_input
from .loading import LoadedModel
from .lora import ActiveAdapters, activate
from .samplers import SamplerChoice, build_scheduler
from .upscalers import Upscalers
from .variation import initial_noise, needs_custom_noise

Kind = Literal["txt2img", "img2img", "inpaint", "upscale"]

# Called after every denoising step with (step, total); returning True stops the batch.
StepCallback = Callable[[int, int], bool]


@dataclass(frozen=True)
class BatchKey:
    """What must be equal for tasks to share one pipeline call."""

    model: str
    kind: Kind
    width: int
    height: int
    steps: int
    sampler: SamplerChoice
    cfg_scale: float
    denoising_strength: float | None = None
    adapters: ActiveAdapters = ()  # LoRA (name, text encoder weight, UNet weight) active for this call
    hires: HiresSpec | None = None  # txt2img only: the hires fix's second pass
    # kind "upscale": the extras spec (engine/extras.py's ExtrasSpec; typed `object` because
    # extras.py imports this module and tests/inference/test_layers.py forbids import cycles)
    extras: object | None = None
    inpainting_fill: int = 1  # inpaint: 0 fill, 1 original, 2 latent noise, 3 latent nothing


@dataclass(frozen=True)
class ImageTask:
    prompt: str
    negative_prompt: str
    seed: int
    init_image: Image.Image | None = None
    mask: Image.Image | None = None
    # Variation seed (A1111's subseed): its noise is slerped into the seed's by the strength.
    subseed: int = 0
    subseed_strength: float = 0.0
    seed_resize_from: tuple[int, int] | None = None  # (width, height) the seed's noise is drawn at
    hr_prompt: str | None = None  # the hires pass's prompts (None: the first pass's)
    hr_negative_prompt: str | None = None
    inpaint_region: tuple[int, int, int, int] | None = None  # inpaint_full_res: the box inpainted


class GenerationInterrupted(Exception):
    """The batch was stopped by an interrupt; images are the partial results."""

    def __init__(self, images: list[Image.Image]):
        super().__init__("interrupted")
        self.images = images


def pipeline_strength(key: BatchKey) -> float:
    """`strength` for an img2img/inpaint pipeline call (its schedule is `key.steps` long).

    diffusers runs `int(steps * strength)` steps and fails where that is 0 (10 steps at
    strength 0.05, or strength 0, which StableStudio sends at image weight 1). A1111 then
    runs the last step of the schedule, at the lowest noise level, and gives back nearly
    the init image: the smallest strength with `int(steps * strength) >= 1` selects that
    step. The schedule is never stretched to fit a tiny strength (1e-7 would otherwise
    make a 10-million-step schedule, 1e-300 an endless loop): a call never has more
    steps than the request asked for, so `--max-steps` bounds the work actually done.
    """
    strength = key.denoising_strength or 0.0
    if key.steps * strength >= 1:
        return strength
    # 1/steps, nudged up where float rounding leaves steps * (1/steps) just under 1; a
    # step or two of nextafter at most, for any step count.
    strength = 1 / key.steps
    while key.steps * strength < 1:
        strength = math.nextafter(strength, 2.0)
    return strength


def effective_steps(key: BatchKey) -> int:
    """Denoising steps actually run: img2img/inpaint skip the first (1 - strength); a
    hires fix adds its second pass."""
    if key.kind == "txt2img" or key.denoising_strength is None:
        return key.steps + (key.hires.steps_run if key.hires is not None else 0)
    return max(1, min(key.steps, int(key.steps * pipeline_strength(key))))


def run_batch(
    model: LoadedModel,
    key: BatchKey,
    tasks: list[ImageTask],
    on_step: StepCallback | None = None,
    upscalers=None,
) -> list[Image.Image]:
    """One pipeline call for `tasks` (two with a hires fix). `upscalers`
    (engine/upscalers.py) serves a hires fix's image upscaler."""
    import torch

    pipe = model.pipeline(key.kind)
    # A fresh scheduler per call: schedulers are stateful (step index, sigmas), and the
    # sampler is part of the batch key.
    pipe.scheduler = build_scheduler(key.sampler, model.scheduler_config)
    activate(pipe, key.adapters, model.loras, model.unet_adapters)
    progress = _Progress(on_step, total=effective_steps(key) if key.hires is not None else None, fallback=effective_steps(key))
    hires = key.hires
    latent_first_pass = hires is not None and hires.is_latent

    generators = [torch.Generator("cpu").manual_seed(t.seed) for t in tasks]
    arguments = dict(
        prompt=[t.prompt for t in tasks],
        negative_prompt=[t.negative_prompt for t in tasks],
        num_inference_steps=key.steps,
        guidance_scale=key.cfg_scale,
        generator=generators,
        callback_on_step_end=progress.step_end,
        output_type="latent" if latent_first_pass else "pil",
    )
    if key.kind == "txt2img":
        arguments.update(width=key.width, height=key.height)
        if any(needs_custom_noise(t) for t in tasks):
            # Drawn from the task's own generator, in the pipeline's order, so the
            # generator then goes on as it would have (ancestral samplers' noise).
            shape = (pipe.unet.config.in_channels, key.height // pipe.vae_scale_factor, key.width // pipe.vae_scale_factor)
            arguments["latents"] = torch.cat(
                [initial_noise(t, g, shape, pipe.unet.dtype) for t, g in zip(tasks, generators, strict=True)]
            ).to(pipe.device)
    else:
        arguments.update(image=[t.init_image for t in tasks], strength=pipeline_strength(key))
    if key.kind == "inpaint":
        inputs = [pipeline_input(t, key.width, key.height) for t in tasks]
        masks = [i.mask for i in inputs]
        regions = [i.image for i in inputs]
        arguments.update(image=regions, mask_image=masks, width=key.width, height=key.height)
        if key.inpainting_fill in (2, 3) and pipe.unet.config.in_channels == 4:
            filled = latent_fill(pipe, regions, masks, [t.seed for t in tasks], key.inpainting_fill)
            arguments.update(image=filled, masked_image_latents=filled)
    with torch.inference_mode():
        images = pipe(**arguments).images
    if key.kind == "inpaint":
        # As A1111 does: only the masked part is repainted; the rest is the init image,
        # pixel for pixel (the VAE round trip would otherwise blur it).
        images = [paste_back(image, task, given) for image, task, given in zip(images, tasks, inputs, strict=True)]
    if hires is not None:
        if progress.interrupted:  # A1111 returns the first pass when stopped there
            images = decode_latents(pipe, images) if latent_first_pass else images
        else:
            images = _hires_pass(model, key, hires, tasks, images, progress, upscalers)
    if progress.interrupted:
        raise GenerationInterrupted(images)
    return images


class _Progress:
    """The step callback of the pipeline calls of one batch; `total` fixed across the two
    passes of a hires fix (None: the pipeline's own count)."""

    def __init__(self, on_step: StepCallback | None, total: int | None, fallback: int):
        self.on_step = on_step
        self.total = total
        self.fallback = fallback
        self.offset = 0
        self.interrupted = False

    def step_end(self, pipeline, step: int, timestep, callback_kwargs):
        total = self.total or getattr(pipeline, "_num_timesteps", None) or self.fallback
        if self.on_step is not None and self.on_step(self.offset + step + 1, total):
            self.interrupted = True
            pipeline._interrupt = True  # diffusers' documented way to stop a running call
        return callback_kwargs


def _hires_pass(model: LoadedModel, key: BatchKey, hires: HiresSpec, tasks, first, progress: _Progress, upscalers):
    import torch

    pipe = model.pipeline("img2img")
    if hires.is_latent:
        upscaled = upscale_latents(first, hires, pipe.vae_scale_factor)
        if not hires.denoises:
            return decode_latents(pipe, upscaled)
    else:
        if upscalers is None:  # resampling upscalers only
            upscalers = Upscalers([])
        upscaled = [upscalers.upscale(image, hires.upscaler, hires.width, hires.height) for image in first]
        if not hires.denoises:
            return upscaled
    pipe.scheduler = build_scheduler(hires.sampler, model.scheduler_config)
    if hires.adapters is not None:  # hr_prompt's own LoRA tags, as A1111 activates them
        activate(pipe, hires.adapters, model.loras, model.unet_adapters)
    progress.offset = key.steps
    arguments = dict(
        prompt=[t.prompt if t.hr_prompt is None else t.hr_prompt for t in tasks],
        negative_prompt=[t.negative_prompt if t.hr_negative_prompt is None else t.hr_negative_prompt for t in tasks],
        image=upscaled,
        strength=pass_strength(hires.denoising_strength),
        num_inference_steps=stretched_steps(hires.steps, hires.denoising_strength),
        guidance_scale=key.cfg_scale,
        # Fresh generators: A1111 re-seeds the hires pass's noise with each image's seed.
        generator=[torch.Generator("cpu").manual_seed(t.seed) for t in tasks],
        callback_on_step_end=progress.step_end,
        output_type="pil",
    )
    with torch.inference_mode():
        return pipe(**arguments).images
