"""Fetching and loading a model reference into text-to-image, image-to-image and inpainting
pipelines.

A model reference is `builtin:<name>`, a local directory written by `save_pretrained`, or a
Hugging Face repo id. `fetch_model` puts exactly the files a load reads into the cache (the
init container's `download` calls it, and so does `load_model` before loading), so what is
prefetched and what is served cannot drift apart. All three load from a local folder with
diffusers' auto pipelines' `from_pretrained`; img2img and inpaint pipelines are derived with
`from_pipe`, which shares the already loaded modules instead of loading the weights a
second time.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .batch_invariance import make_batch_invariant
from .builtin import ensure_builtin, is_builtin
from .compiled_shapes import CompiledShapes
from .fast_path import FastPathConfig, apply_fast_path

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


def import_libraries() -> float:
    """Imports torch, transformers and diffusers, with the auto pipeline every load uses,
    and returns the seconds that took (about 0 where they were already imported).

    The server calls this first when it loads, so that the cold start it logs splits into
    the library imports, which it cannot shorten, and the rest. These are imports the load
    would run anyway: diffusers and transformers import lazily, and resolving
    `AutoPipelineForText2Image` pulls in the pipelines and the CLIP models; what a load
    still imports after it (a few schedulers and guiders, ~0.05 s) counts as the rest.
    """
    started = time.perf_counter()
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from diffusers import AutoPipelineForText2Image  # noqa: F401

    return time.perf_counter() - started


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
    # Their UNet layers, merged into the UNet's weights per batch (engine/lora_merge.py).
    unet_adapters: Any = None
    # How the pipeline was prepared for speed (engine/fast_path.py): compiled, padded.
    fast_path: FastPathConfig | None = None
    # Which input shapes its compiled modules run (engine/compiled_shapes.py); warm-up closes it.
    compiled_shapes: CompiledShapes = field(default_factory=CompiledShapes)
    # Its warm-up plan has run (the server's runtime warms a checkpoint before using it);
    # a checkpoint evicted and loaded again is a new LoadedModel, not warmed yet.
    warmed: bool = False
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


@dataclass(frozen=True)
class FetchedModel:
    """A model's pipeline folder on local disk and how to load it from there."""

    folder: Path
    # "fp16" when loading in float16 and the checkpoint publishes that variant (diffusers
    # then takes each component's fp16 files, or its default ones where it has none).
    variant: str | None
    # Components named in model_index.json that are not loaded (nor fetched).
    skipped: tuple[str, ...]

    def load_options(self) -> dict[str, Any]:
        """The `from_pretrained` options that load exactly the fetched files."""
        options: dict[str, Any] = {name: None for name in self.skipped}
        if "safety_checker" in self.skipped:
            options["requires_safety_checker"] = False  # skipped on purpose: no warning
        if self.variant:
            options["variant"] = self.variant
        return options


# Outputs are served to users as they are; no safety checker is fetched or loaded (the
# operator decides on content policy, as with A1111). SD 1.5's is 0.6 to 1.2 GB.
NOT_LOADED_COMPONENTS = ("safety_checker",)


def weights_variant(device: DeviceConfig) -> str | None:
    """The weight files to prefer: the fp16 variant (half the size) for float16, else the default.

    bfloat16 and float32 load the full-precision files: converting fp16 files to bfloat16
    would lose range the full-precision weights have.
    """
    return "fp16" if device.dtype_name == "float16" else None


def fetch_model(model: str, *, cache_dir: Path, revision: str | None = None, device: DeviceConfig) -> FetchedModel:
    """Make `model`'s files for `device` local; fetch from the Hub only what `load_model` reads.

    For a Hub repo this is diffusers' own `DiffusionPipeline.download`, the call its
    `from_pretrained` makes: the component folders model_index.json names, each one's
    files of the variant where the repo has them and its default files where not,
    safetensors over pickles, no single-file checkpoints at the repo root, no other
    frameworks' weights. A repo with no file of the variant at all falls back to the
    default weights. `HF_TOKEN` in the environment is used for gated or private repos and
    is never logged.
    """
    wanted = weights_variant(device)
    if is_builtin(model):
        folder = ensure_builtin(model, cache_dir)
    elif Path(model).expanduser().is_dir():
        folder = Path(model).expanduser().resolve()
    else:
        folder = _download_pipeline(model, revision=revision, cache_dir=cache_dir, variant=wanted)
    index = json.loads((folder / "model_index.json").read_text())
    skipped = tuple(name for name in NOT_LOADED_COMPONENTS if name in index)
    variant = wanted if wanted and _has_variant(folder, index, wanted, skipped) else None
    if wanted and not variant:
        log.info("%s has no %s weights; using its default weights, as %s", model, wanted, device.dtype_name)
    return FetchedModel(folder=folder, variant=variant, skipped=skipped)


def _download_pipeline(repo: str, *, revision: str | None, cache_dir: Path, variant: str | None) -> Path:
    from diffusers import DiffusionPipeline

    options: dict[str, Any] = {"cache_dir": str(cache_dir), "revision": revision}
    # A component passed as an argument is not downloaded (that is how from_pretrained skips it).
    options.update({name: None for name in NOT_LOADED_COMPONENTS})
    if variant:
        try:
            return Path(DiffusionPipeline.download(repo, variant=variant, **options))
        except ValueError as error:  # diffusers: "no such modeling files are available"
            if variant not in str(error):
                raise
            log.info("%s publishes no %s weights; fetching the default weights", repo, variant)
    return Path(DiffusionPipeline.download(repo, **options))


def _has_variant(folder: Path, index: dict[str, Any], variant: str, skipped: tuple[str, ...]) -> bool:
    """Whether a loaded component has weight files of `variant` (diffusers' own test:
    `diffusion_pytorch_model.fp16.safetensors`, `model.fp16-00001-of-00002.safetensors`)."""
    components = [name for name, value in index.items() if isinstance(value, list) and name not in skipped]
    return any(
        path.name.split(".")[1].startswith(variant)
        for name in components
        if (folder / name).is_dir()
        for path in (folder / name).iterdir()
        if path.name.count(".") >= 2
    )


def load_model(
    model: str,
    *,
    cache_dir: Path,
    revision: str | None = None,
    device: DeviceConfig | None = None,
    fast_path: FastPathConfig | None = None,
) -> LoadedModel:
    import torch
    from diffusers import AutoPipelineForText2Image

    device = device or choose_device()
    started = time.perf_counter()
    # The same call as the init container's `download`: with its files cached, no download here.
    fetched = fetch_model(model, cache_dir=cache_dir, revision=revision, device=device)
    pipeline = AutoPipelineForText2Image.from_pretrained(str(fetched.folder), dtype=device.dtype, **fetched.load_options())
    pipeline.set_progress_bar_config(disable=True)
    # Decode one image at a time: VAE decoding dominates peak memory at large batches,
    # and a per-image decode keeps an image independent of what it was batched with.
    pipeline.vae.enable_slicing()
    pipeline.to(device.device)
    # A server never trains. Compiled code guards on each weight's requires_grad, and
    # loading a LoRA adapter (PEFT) turns it off: with it off from the start, a forward
    # precompiled without adapters serves a start with them, and the other way round.
    for component in pipeline.components.values():
        if isinstance(component, torch.nn.Module):
            component.requires_grad_(False)
    # The one place the fast path is applied (--compile): before LoRA adapters load and
    # before any call, since compiling happens at the first call.
    shapes = CompiledShapes()
    applied = apply_fast_path(pipeline, fast_path or FastPathConfig(channels_last=device.channels_last), shapes=shapes)
    if device.device == "cpu":
        # After the fast path: fused QKV projections are new Linear modules to hook.
        make_batch_invariant(pipeline)
    seconds = time.perf_counter() - started
    log.info(
        "loaded model %s (%s) on %s/%s from %s weights in %.2fs",
        model, type(pipeline).__name__, device.device, device.dtype_name, fetched.variant or "default", seconds,
    )
    return LoadedModel(
        name=model,
        source=resolve_source(model, cache_dir),
        device=device,
        text2img=pipeline,
        load_seconds=seconds,
        is_sdxl="XL" in type(pipeline).__name__,
        fast_path=applied,
        compiled_shapes=shapes,
    )
