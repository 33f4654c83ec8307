"""The Extras tab's upscale of one image, as A1111's postprocessing_upscale does it.

Sizes: resize_mode 0 scales by `scale`; resize_mode 1 scales to cover `width` x `height`
(and, with `crop`, is cut to exactly that size, centred). The target is rounded down to a
multiple of 8, as A1111's upscalers do. `upscaler_2` is blended over `upscaler_1` at
`visibility_2`. Runs on the batcher's worker as a batch of kind "upscale".
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from .generate import BatchKey, GenerationInterrupted, ImageTask
from .upscalers import Upscalers


@dataclass(frozen=True)
class ExtrasSpec:
    resize_mode: int
    scale: float
    width: int
    height: int
    crop: bool
    upscaler_1: str
    upscaler_2: str
    visibility_2: float

    def target(self, image: Image.Image) -> tuple[int, int]:
        scale = self.scale
        if self.resize_mode == 1:
            scale = max(self.width / image.width, self.height / image.height)
        return max(8, int(image.width * scale) // 8 * 8), max(8, int(image.height * scale) // 8 * 8)

    def info(self) -> str:
        scale = f"{self.width}x{self.height}" if self.resize_mode == 1 else _number(self.scale)
        fields = {"Postprocess upscale " + ("to" if self.resize_mode == 1 else "by"): scale,
                  "Postprocess upscaler": self.upscaler_1}
        if self.upscaler_2 != "None" and self.visibility_2 > 0:
            fields["Postprocess upscaler 2"] = self.upscaler_2
        return ", ".join(f"{k}: {v}" for k, v in fields.items())


def run_extras(upscalers: Upscalers, key: BatchKey, tasks: list[ImageTask], on_step) -> list[Image.Image]:
    """The batch runner for kind "upscale" (called on the batcher's worker thread)."""
    spec = key.extras
    assert isinstance(spec, ExtrasSpec), "a batch of kind 'upscale' carries its ExtrasSpec"
    results: list[Image.Image] = []
    for index, task in enumerate(tasks):
        image = task.init_image
        assert image is not None, "an upscale task carries its image"
        width, height = spec.target(image)
        upscaled = upscalers.upscale(image, spec.upscaler_1, width, height)
        if spec.upscaler_2 != "None" and spec.visibility_2 > 0:
            second = upscalers.upscale(image, spec.upscaler_2, width, height)
            upscaled = Image.blend(upscaled, second, spec.visibility_2)
        if spec.resize_mode == 1 and spec.crop and upscaled.size != (spec.width, spec.height):
            cropped = Image.new("RGB", (spec.width, spec.height))
            cropped.paste(upscaled, (spec.width // 2 - upscaled.width // 2, spec.height // 2 - upscaled.height // 2))
            upscaled = cropped
        results.append(upscaled)
        if on_step is not None and on_step(index + 1, len(tasks)):
            raise GenerationInterrupted(results)
    return results



def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value
