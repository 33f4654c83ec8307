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

from .loading import LoadedModel
from .lora import ActiveAdapters, activate
from .samplers import SamplerChoice, build_scheduler

Kind = Literal["txt2img", "img2img", "inpaint"]

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
    adapters: ActiveAdapters = ()  # LoRA (name, weight) pairs active for this call


@dataclass(frozen=True)
class ImageTask:
    prompt: str
    negative_prompt: str
    seed: int
    init_image: Image.Image | None = None
    mask: Image.Image | None = None


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
    """Denoising steps actually run: img2img/inpaint skip the first (1 - strength)."""
    if key.kind == "txt2img" or key.denoising_strength is None:
        return key.steps
    return max(1, min(key.steps, int(key.steps * pipeline_strength(key))))


def run_batch(
    model: LoadedModel,
    key: BatchKey,
    tasks: list[ImageTask],
    on_step: StepCallback | None = None,
) -> list[Image.Image]:
    import torch

    pipe = model.pipeline(key.kind)
    # A fresh scheduler per call: schedulers are stateful (step index, sigmas), and the
    # sampler is part of the batch key.
    pipe.scheduler = build_scheduler(key.sampler, model.scheduler_config)
    activate(pipe, key.adapters, model.loras)
    interrupted = False

    def step_end(pipeline, step: int, timestep, callback_kwargs):
        nonlocal interrupted
        total = getattr(pipeline, "_num_timesteps", None) or effective_steps(key)
        if on_step is not None and on_step(step + 1, total):
            interrupted = True
            pipeline._interrupt = True  # diffusers' documented way to stop a running call
        return callback_kwargs

    arguments = dict(
        prompt=[t.prompt for t in tasks],
        negative_prompt=[t.negative_prompt for t in tasks],
        num_inference_steps=key.steps,
        guidance_scale=key.cfg_scale,
        generator=[torch.Generator("cpu").manual_seed(t.seed) for t in tasks],
        callback_on_step_end=step_end,
        output_type="pil",
    )
    if key.kind == "txt2img":
        arguments.update(width=key.width, height=key.height)
    else:
        arguments.update(image=[t.init_image for t in tasks], strength=pipeline_strength(key))
    if key.kind == "inpaint":
        arguments.update(mask_image=[t.mask for t in tasks], width=key.width, height=key.height)
    with torch.inference_mode():
        images = pipe(**arguments).images
    if key.kind == "inpaint":
        # As A1111 does: only the masked part is repainted; the rest is the init image,
        # pixel for pixel (the VAE round trip would otherwise blur it).
        images = [
            Image.composite(image, task.init_image.convert(image.mode), task.mask)
            for image, task in zip(images, tasks)
        ]
    if interrupted:
        raise GenerationInterrupted(images)
    return images
