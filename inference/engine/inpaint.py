"""Inpainting as AUTOMATIC1111 does it, around diffusers' inpaint pipelines.

- `inpainting_fill`: what the masked area starts from. 0 "fill": the init image with the
  masked area painted over by its blurred surroundings; 1 "original": the init image;
  2 "latent noise": the masked latents replaced by noise of the image's seed; 3 "latent
  nothing": the masked latents zeroed. 2 and 3 work on the latents, so they go to the
  pipeline as latents (4-channel UNets; an inpainting checkpoint's 9-channel UNet gets the
  image and conditions on the masked image itself, as diffusers' inpaint pipeline does).
- `inpaint_full_res` ("only masked"): the mask's bounding box, padded and widened to the
  output's aspect ratio, is cut out, inpainted at the full output size and pasted back;
  the rest of the image is never touched.
Everywhere, pixels outside the (blurred) mask are the init image's, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageFilter, ImageOps

Box = tuple[int, int, int, int]  # left, top, right, bottom


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's "fill": the masked area repainted with ever less blurred copies of what
    surrounds it, so it starts from the surrounding colours instead of the old content."""
    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    filled = Image.new("RGBA", image.size)
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = kept.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            filled.alpha_composite(blurred)
    return Image.composite(filled.convert("RGB"), image.convert("RGB"), mask.convert("L"))


def crop_region(mask: Image.Image, padding: int, width: int, height: int) -> Box | None:
    """The masked bounding box plus `padding`, widened to width:height's aspect ratio
    inside the mask's canvas (A1111's get_crop_region + expand_crop_region); None when
    nothing is masked."""
    box = mask.convert("L").point(lambda v: 255 if v > 0 else 0).getbbox()
    if box is None:
        return None
    canvas_w, canvas_h = mask.size
    x1, y1 = max(box[0] - padding, 0), max(box[1] - padding, 0)
    x2, y2 = min(box[2] + padding, canvas_w), min(box[3] + padding, canvas_h)
    ratio = width / height
    if (x2 - x1) / (y2 - y1) < ratio:  # too narrow: widen
        want = (y2 - y1) * ratio
        x1, x2 = _grow(x1, x2, want, canvas_w)
    else:  # too flat: heighten
        want = (x2 - x1) / ratio
        y1, y2 = _grow(y1, y2, want, canvas_h)
    return x1, y1, x2, y2


def _grow(low: int, high: int, want: float, limit: int) -> tuple[int, int]:
    extra = int(want - (high - low))
    low -= extra // 2
    high += extra - extra // 2
    if low < 0:
        high, low = min(high - low, limit), 0
    if high > limit:
        low, high = max(low - (high - limit), 0), limit
    return low, high


@dataclass
class InpaintInput:
    image: Image.Image  # what the pipeline sees (the cut-out region, at the output size)
    mask: Image.Image
    region: Box | None


def pipeline_input(task: Any, width: int, height: int) -> InpaintInput:
    if task.inpaint_region is None:
        return InpaintInput(task.init_image, task.mask, None)
    region = task.inpaint_region
    image = task.init_image.crop(region).resize((width, height), Image.Resampling.LANCZOS)
    mask = task.mask.crop(region).resize((width, height), Image.Resampling.LANCZOS)
    return InpaintInput(image, mask, region)


def paste_back(result: Image.Image, task: Any, prepared: InpaintInput) -> Image.Image:
    """The inpainted result on the init image: the region pasted back, then only the
    masked pixels taken from it."""
    if prepared.region is not None:
        x1, y1, x2, y2 = prepared.region
        canvas = task.init_image.convert(result.mode).copy()
        canvas.paste(result.resize((x2 - x1, y2 - y1), Image.Resampling.LANCZOS), (x1, y1))
        result = canvas
    return Image.composite(result, task.init_image.convert(result.mode), task.mask)


def latent_fill(pipe: Any, images: list[Image.Image], masks: list[Image.Image], seeds: list[int], mode: int) -> Any:
    """The init images' latents with the masked part replaced by the seed's noise (2) or
    zeros (3), as A1111 does for "latent noise" / "latent nothing"."""
    import numpy as np
    import torch

    vae = pipe.vae
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    dtype = torch.float32 if upcast else vae.dtype
    latents = []
    with torch.inference_mode():
        if upcast:
            vae.to(torch.float32)
        try:
            for image, mask, seed in zip(images, masks, seeds, strict=True):
                pixels = pipe.image_processor.preprocess(image).to(vae.device, dtype)
                latent = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
                size = (latent.shape[3], latent.shape[2])
                coverage = np.asarray(mask.convert("L").resize(size, Image.Resampling.LANCZOS), dtype=np.float32) / 255
                masked = coverage.round()
                nmask = torch.from_numpy(masked).to(latent.device, latent.dtype)
                if mode == 2:
                    noise = torch.randn(latent.shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=latent.dtype)
                    latent = latent * (1 - nmask) + noise.to(latent.device) * nmask
                else:
                    latent = latent * (1 - nmask)
                latents.append(latent)
        finally:
            if upcast:
                vae.to(torch.float16)
    return torch.cat(latents).to(pipe.unet.dtype)
