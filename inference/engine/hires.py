"""Hires fix as AUTOMATIC1111 does it: a first pass at the requested size, an upscale,
and a second img2img pass at the hires size.

The upscale is either in latent space (the "Latent ..." upscalers: the first pass's
latents are interpolated) or on the decoded image (any image upscaler of
`engine/upscalers.py`: Lanczos, Nearest, a learned ESRGAN network, ...), re-encoded by
the second pass. The second pass starts from fresh noise of each image's seed, as A1111
re-seeds its generator, and runs exactly `steps` denoising steps at `denoising_strength`
(the schedule is stretched to `steps / strength`, as A1111 does for the hires pass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .lora import ActiveAdapters
from .samplers import SamplerChoice

# A1111's latent upscale modes: name -> (torch interpolate mode, antialias).
LATENT_UPSCALE_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}


@dataclass(frozen=True)
class HiresSpec:
    """The second pass of a hires-fix batch (part of the batch key)."""

    width: int
    height: int
    upscaler: str  # a latent mode above, or an image upscaler's name
    steps: int  # denoising steps of the second pass (hr_second_pass_steps, or the first pass's)
    denoising_strength: float
    sampler: SamplerChoice
    # The LoRA adapters of the second pass where `hr_prompt` names others than the prompt
    # (A1111 activates hr_prompt's own: none if it has no tag); None: the first pass's.
    adapters: ActiveAdapters | None = None

    @property
    def is_latent(self) -> bool:
        return self.upscaler in LATENT_UPSCALE_MODES

    @property
    def denoises(self) -> bool:
        """A1111 skips the second pass at strength 0: the result is the upscale alone."""
        return self.denoising_strength > 0

    @property
    def steps_run(self) -> int:
        return self.steps if self.denoises else 0


MIN_STRETCH_STRENGTH = 1e-3


def pass_strength(strength: float) -> float:
    """The second pass's strength. Below MIN_STRETCH_STRENGTH it counts as that: the
    schedule stays at most 1000 times `steps` long (1e-300 would ask for a 1e301-step
    schedule, and the float arithmetic of `stretched_steps` would never settle), and such
    a pass changes next to nothing either way."""
    return min(max(strength, MIN_STRETCH_STRENGTH), 1.0)


def stretched_steps(steps: int, strength: float) -> int:
    """`num_inference_steps` for which diffusers' img2img runs exactly `steps` steps at
    `pass_strength(strength)`."""
    strength = pass_strength(strength)
    total = max(steps, math.ceil(steps / strength))
    while int(total * strength) < steps:  # float rounding at the boundary
        total += 1
    while total > steps and int((total - 1) * strength) >= steps:
        total -= 1
    return total


def upscale_latents(latents: Any, spec: HiresSpec, vae_scale_factor: int) -> Any:
    import torch

    mode, antialias = LATENT_UPSCALE_MODES[spec.upscaler]
    size = (spec.height // vae_scale_factor, spec.width // vae_scale_factor)
    # Each image on its own: an image's pixels never depend on its batch.
    return torch.cat(
        [
            torch.nn.functional.interpolate(latent.unsqueeze(0), size=size, mode=mode, antialias=antialias)
            for latent in latents
        ]
    )


def decode_latents(pipe: Any, latents: Any) -> list:
    """Latents to PIL images, as the pipeline's own decode does (one image at a time)."""
    import torch

    vae = pipe.vae
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    images = []
    with torch.inference_mode():
        for latent in latents:
            sample = latent.unsqueeze(0).to(torch.float32 if upcast else vae.dtype) / vae.config.scaling_factor
            if upcast:
                vae.to(torch.float32)
            try:
                decoded = vae.decode(sample, return_dict=False)[0]
            finally:
                if upcast:
                    vae.to(torch.float16)
            images.extend(pipe.image_processor.postprocess(decoded, output_type="pil"))
    return images
