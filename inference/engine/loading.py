"""Loading a model reference into text-to-image, image-to-image and inpainting pipelines.

A model reference is `builtin:<name>`, a local directory written by `save_pretrained`, or a
Hugging Face repo id. All three go through diffusers' auto pipelines' `from_pretrained`;
img2img and inpaint pipelines are derived with `from_pipe`, which shares the already loaded
modules instead of loading the weights a second time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .batch_invariance import make_batch_invariant
from .builtin import ensure_builtin, is_builtin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceConfig:
    device: str  # "cuda", "mps" or "cpu"
    dtype_name: str  # "float16", "bfloat16" or "float32"
    channels_last: bool = False

    @property
    def dtype(self):
        import torch

        return getattr(torch, self.dtype_name)


def choose_device(device: str = "auto", dtype: str = "auto") -> DeviceConfig:
    """fp16 + channels_last on CUDA, fp32 elsewhere, unless asked otherwise."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "float16" if device == "cuda" else "float32"
    if dtype not in ("float16", "bfloat16", "float32"):
        raise ValueError(f"dtype must be auto, float16, bfloat16 or float32, not {dtype!r}")
    return DeviceConfig(device=device, dtype_name=dtype, channels_last=device == "cuda")


def resolve_source(model: str, cache_dir: Path) -> str:
    """The path or repo id that `from_pretrained` receives for a model reference."""
    if is_builtin(model):
        return str(ensure_builtin(model, cache_dir))
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser().resolve())
    return model


@dataclass
class LoadedModel:
    """One checkpoint, loaded once, with the pipelines derived from it."""

    name: str
    source: str
    device: DeviceConfig
    text2img: Any
    load_seconds: float
    is_sdxl: bool
    # LoRA adapters loaded onto this checkpoint's modules, by name (engine/lora.py).
    loras: dict[str, Any] = field(default_factory=dict)
    _derived: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def title(self) -> str:
        """The checkpoint title clients see (A1111's `sd_model_checkpoint`)."""
        return self.name

    @property
    def short_hash(self) -> str:
        return self.hash_of(self.name)

    @staticmethod
    def hash_of(name: str) -> str:
        """A stable 10-hex-digit id of a checkpoint, in the place of A1111's file hash."""
        import hashlib

        return hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]

    @property
    def native_size(self) -> tuple[int, int]:
        """The resolution the model was trained at (the default width and height)."""
        pipe = self.text2img
        side = int(pipe.unet.config.sample_size) * int(getattr(pipe, "vae_scale_factor", 8))
        return side, side

    @property
    def scheduler_config(self) -> dict[str, Any]:
        """The checkpoint's own scheduler config, as loaded (samplers derive from it)."""
        return dict(self._scheduler_config)

    def __post_init__(self) -> None:
        # Captured once: each batch swaps in its sampler's scheduler, which must never
        # become the base that the next sampler is derived from.
        self._scheduler_config = dict(self.text2img.scheduler.config)

    def pipeline(self, kind: str):
        """The pipeline for `kind` ("txt2img", "img2img" or "inpaint"), sharing weights."""
        if kind == "txt2img":
            return self.text2img
        if kind not in self._derived:
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

            auto = {"img2img": AutoPipelineForImage2Image, "inpaint": AutoPipelineForInpainting}[kind]
            derived = auto.from_pipe(self.text2img)
            derived.set_progress_bar_config(disable=True)
            self._derived[kind] = derived
        return self._derived[kind]


def load_model(
    model: str,
    *,
    cache_dir: Path,
    revision: str | None = None,
    device: DeviceConfig | None = None,
) -> LoadedModel:
    import torch
    from diffusers import AutoPipelineForText2Image

    device = device or choose_device()
    started = time.perf_counter()
    source = resolve_source(model, cache_dir)
    options: dict[str, Any] = {"dtype": device.dtype, "cache_dir": str(cache_dir)}
    if revision and not is_builtin(model):
        options["revision"] = revision
    pipeline = _from_pretrained(AutoPipelineForText2Image, source, options, half=device.dtype_name == "float16")
    pipeline.set_progress_bar_config(disable=True)
    # Decode one image at a time: VAE decoding dominates peak memory at large batches,
    # and a per-image decode keeps an image independent of what it was batched with.
    pipeline.vae.enable_slicing()
    # Outputs are served to users as they are; no safety checker is loaded (the
    # operator decides on content policy, as with A1111).
    if getattr(pipeline, "safety_checker", None) is not None:
        pipeline.safety_checker = None
    pipeline.to(device.device)
    if device.device == "cpu":
        make_batch_invariant(pipeline)
    if device.channels_last:
        pipeline.unet.to(memory_format=torch.channels_last)
    seconds = time.perf_counter() - started
    log.info("loaded model %s (%s) on %s/%s in %.2fs", model, type(pipeline).__name__, device.device, device.dtype_name, seconds)
    return LoadedModel(
        name=model,
        source=source,
        device=device,
        text2img=pipeline,
        load_seconds=seconds,
        is_sdxl="XL" in type(pipeline).__name__,
    )


def _from_pretrained(auto_class, source: str, options: dict[str, Any], *, half: bool):
    # Hub repos often publish a smaller fp16 variant; use it when loading in fp16 and fall
    # back to the full-precision files when the repo has none.
    if half:
        try:
            return auto_class.from_pretrained(source, variant="fp16", **options)
        except (OSError, ValueError) as error:
            log.info("no fp16 variant for %s (%s); loading the default weights", source, type(error).__name__)
    return auto_class.from_pretrained(source, **options)


def download(model: str, *, cache_dir: Path, revision: str | None = None) -> str:
    """Fetch a model into the cache (init container). Returns where it now lies.

    Only the files a diffusers pipeline needs are fetched (DiffusionPipeline.download
    skips other frameworks' weights). `HF_TOKEN` in the environment is used by
    huggingface_hub for gated or private repos and is never logged.
    """
    if is_builtin(model):
        return str(ensure_builtin(model, cache_dir))
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser().resolve())
    from diffusers import DiffusionPipeline

    return str(DiffusionPipeline.download(model, revision=revision, cache_dir=str(cache_dir)))
