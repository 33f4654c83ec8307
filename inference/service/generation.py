"""Turning an A1111-shaped request into batch tasks, and the results into A1111's response.

Shared by every dialect (seed API, /sdapi/v1, OpenAI images), so they validate, seed and
describe images the same way.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
from dataclasses import dataclass, replace

import anyio
from PIL import Image, ImageFilter, ImageOps

from ..config import ServerSettings
from ..engine.generate import BatchKey, ImageTask, Kind
from ..engine.hires import LATENT_UPSCALE_MODES, HiresSpec
from ..engine.inpaint import crop_region, fill_masked
from ..engine.loading import LoadedModel
from ..engine.lora import extract_adapters
from ..engine.samplers import UnknownSamplerError, resolve
from ..engine.upscalers import UnknownUpscalerError
from ..errors import InitImageNotFound, InvalidInput, ModelNotFound
from ..imaging import decode_image, encode_png, fit
from ..serving.batcher import JobResult
from .describe import describe, infotext
from .history import GenerationHistory
from .options import A1111State
from .runtime import DisconnectCheck, Runtime
from .schemas import (
    GenerationRequest,
    GenerationResponse,
    Img2ImgRequest,
    Txt2ImgRequest,
)

# Requests decoding their images (and preparing their tasks) at once; more wait. Each may
# hold a decoded image of up to imaging.MAX_DECODED_PIXELS (64 MiB as RGBA) while it works.
DECODE_THREADS = 2


def _encode_threads() -> int:
    """Responses encoding their PNGs at once: the CPUs this process may use (zlib releases
    the GIL), at least 2 and at most 8. Not shared with decoding: when a batch ends, its
    responses all encode at once, and the next requests' admission must not queue behind
    them (with clients as many as --max-batch-size, the GPU waits for exactly those
    requests); the images are already in memory, so the bound is the CPUs, not memory."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 2
    return min(8, max(2, cpus))


ENCODE_THREADS = _encode_threads()


@dataclass
class DecodedImages:
    init_images: list[Image.Image]
    mask: Image.Image | None


@dataclass
class Prepared:
    key: BatchKey
    tasks: list[ImageTask]
    seeds: list[int]
    subseeds: list[int]


class GenerationService:
    def __init__(
        self,
        settings: ServerSettings,
        runtime: Runtime,
        a1111: A1111State,
        history: GenerationHistory | None = None,
    ):
        self.settings = settings
        self.runtime = runtime
        self.a1111 = a1111
        self.history = history
        # Made on first use, on the event loop.
        self._decode_limiter: anyio.CapacityLimiter | None = None
        self._encode_limiter: anyio.CapacityLimiter | None = None

    # -- validation (cheap: on the event loop, before the request takes a queue slot) ----

    def _check_limits(self, req: GenerationRequest, width: int | None, height: int | None) -> None:
        """Every limit a request can be checked against without its images or its model;
        width/height None: the model's native size, checked once the model is known."""
        s = self.settings
        for name, value, limit in (("width", width, s.max_width), ("height", height, s.max_height)):
            if value is None:
                continue
            if value % 8:
                raise InvalidInput(name, f"must be a multiple of 8, got {value}", value)
            if not 64 <= value <= limit:
                raise InvalidInput(name, f"must be between 64 and {limit}, got {value}", value)
        if req.steps > s.max_steps:
            raise InvalidInput("steps", f"must be at most {s.max_steps}, got {req.steps}", req.steps)
        if req.batch_size > s.max_images_per_batch:
            raise InvalidInput(
                "batch_size", f"must be at most {s.max_images_per_batch}, got {req.batch_size}", req.batch_size
            )
        if req.n_iter > s.max_n_iter:
            raise InvalidInput("n_iter", f"must be at most {s.max_n_iter}, got {req.n_iter}", req.n_iter)
        count = req.batch_size * req.n_iter
        if count > s.max_images_per_request:
            raise InvalidInput(
                "n_iter", f"batch_size x n_iter is {count} images; one request makes at most {s.max_images_per_request}",
                req.n_iter,
            )
        if width is not None and height is not None and count * width * height > s.max_pixels_per_request:
            raise InvalidInput(
                "batch_size",
                f"{count} images of {width}x{height} are {count * width * height} pixels; one request makes at most "
                f"{s.max_pixels_per_request} (fewer images, or smaller ones)",
                req.batch_size,
            )
        for name in ("prompt", "negative_prompt"):
            length = len(getattr(req, name))
            if length > s.max_prompt_length:
                raise InvalidInput(name, f"is {length} characters; the limit is {s.max_prompt_length}")
        if isinstance(req, Img2ImgRequest):
            if not req.init_images:
                raise InitImageNotFound()
            if len(req.init_images) > s.max_init_images:
                raise InvalidInput(
                    "init_images", f"has {len(req.init_images)} images; the limit is {s.max_init_images}", None
                )

    def _checkpoint_for(self, req: GenerationRequest) -> str:
        """The current checkpoint's name, or the one `override_settings.sd_model_checkpoint`
        names for this request only; never loads it (see `generate`)."""
        wanted = req.override_settings.get("sd_model_checkpoint") or None
        try:
            return self.runtime.checkpoint_named(None if wanted is None else str(wanted))
        except ModelNotFound as error:
            raise InvalidInput(("override_settings", "sd_model_checkpoint"), str(error), wanted) from None

    def validate(self, req: GenerationRequest, model: LoadedModel | None) -> None:
        """The checks that need neither images nor (when `model` is None: not loaded yet)
        the model. Re-run by `prepare` once the model is known."""
        width, height = req.width, req.height
        if model is not None:
            default_width, default_height = model.native_size
            width, height = width or default_width, height or default_height
        self._check_limits(req, width, height)
        try:
            resolve(req.sampler_name or req.sampler_index, req.scheduler)
        except UnknownSamplerError as error:
            raise InvalidInput(error.field, str(error), getattr(req, error.field, None)) from None
        # LoRA tags: against the adapters this checkpoint loaded, or (not loaded yet) the
        # ones the server offers; `prepare` checks the checkpoint's own once it is loaded.
        available = model.loras if model is not None else {spec.name: spec for spec in self.runtime.lora_specs()}
        try:
            extract_adapters(req.prompt, available)
        except ValueError as error:
            raise InvalidInput("prompt", str(error), req.prompt) from None

    # -- request -> tasks (on a worker thread, after admission) ---------------------------

    def decode_images(self, req: GenerationRequest, size: tuple[int, int] | None = None) -> DecodedImages:
        """The request's init images and mask, decoded (bounded: see imaging.decode_image)
        one at a time and, when the output `size` is known, each resized to it at once, so
        that only one full-size image is in memory at a time."""
        if not isinstance(req, Img2ImgRequest):
            return DecodedImages([], None)
        images = []
        for index, data in enumerate(req.init_images):
            image = decode_image(data, ("init_images", index))
            images.append(image if size is None else fit(image, *size, req.resize_mode))
            del image
        mask = decode_image(req.mask, "mask") if req.mask else None
        if mask is not None and size is not None:
            mask = fit(mask.convert("L"), *size, req.resize_mode)
        return DecodedImages(images, mask)

    def prepare(self, req: GenerationRequest, model: LoadedModel, decoded: DecodedImages | None = None) -> Prepared:
        self.validate(req, model)
        default_width, default_height = model.native_size
        width = req.width or default_width
        height = req.height or default_height
        sampler = resolve(req.sampler_name or req.sampler_index, req.scheduler)
        # The encoder sees the prompt without its <lora:...> tags; the tags stay in the
        # infotext, as A1111 keeps them, so the PNG says how it was made.
        encoder_prompt, adapters = extract_adapters(req.prompt, model.loras)

        count = req.batch_size * req.n_iter
        seed = req.seed if req.seed != -1 else secrets.randbelow(2**32)
        subseed = req.subseed if req.subseed != -1 else secrets.randbelow(2**32)
        # As A1111: with a variation, every image keeps the seed and varies the subseed.
        varied = req.subseed_strength > 0
        seeds = [(seed + (0 if varied else i)) % 2**32 for i in range(count)]
        subseeds = [(subseed + i) % 2**32 for i in range(count)]
        resize_from = None
        if req.seed_resize_from_w > 0 and req.seed_resize_from_h > 0:
            resize_from = (req.seed_resize_from_w, req.seed_resize_from_h)
        hires = None
        hr_prompt = hr_negative_prompt = None
        if isinstance(req, Txt2ImgRequest) and req.enable_hr:
            hires = self._hires(req, model, width, height)
            if req.hr_prompt:
                try:
                    hr_prompt, hr_adapters = extract_adapters(req.hr_prompt, model.loras)
                except ValueError as error:
                    raise InvalidInput("hr_prompt", str(error), req.hr_prompt) from None
                if hr_adapters != adapters:
                    hires = replace(hires, adapters=hr_adapters)
            hr_negative_prompt = req.hr_negative_prompt or None

        kind: Kind = "txt2img"
        init_images: list[Image.Image | None] = [None]
        mask = None
        strength = None
        fill = 1
        region = None
        if isinstance(req, Img2ImgRequest):
            decoded = decoded or self.decode_images(req)
            fitted = [fit(image, width, height, req.resize_mode) for image in decoded.init_images]
            mask = self._mask(req, decoded.mask, width, height)
            kind = "inpaint" if mask is not None else "img2img"
            strength = req.denoising_strength
            if mask is not None:
                fill = req.inpainting_fill
                if fill == 0:
                    fitted = [fill_masked(image, mask) for image in fitted]
                if req.inpaint_full_res:
                    region = crop_region(mask, req.inpaint_full_res_padding, width, height)
            init_images = list(fitted)

        key = BatchKey(
            model=model.name,
            kind=kind,
            width=width,
            height=height,
            steps=req.steps,
            sampler=sampler,
            cfg_scale=float(req.cfg_scale),
            denoising_strength=strength,
            adapters=adapters,
            hires=hires,
            inpainting_fill=fill,
        )
        tasks = [
            ImageTask(
                prompt=encoder_prompt,
                negative_prompt=req.negative_prompt,
                seed=seeds[i],
                init_image=init_images[i % len(init_images)],
                mask=mask,
                subseed=subseeds[i],
                subseed_strength=req.subseed_strength,
                seed_resize_from=resize_from,
                hr_prompt=hr_prompt,
                hr_negative_prompt=hr_negative_prompt,
                inpaint_region=region,
            )
            for i in range(count)
        ]
        return Prepared(key, tasks, seeds, subseeds)

    def _hires(self, req: Txt2ImgRequest, model: LoadedModel, width: int, height: int) -> HiresSpec:
        """The second pass of a hires fix, sized as A1111 sizes it (rounded down to a
        multiple of 8, which the latent upscale needs)."""
        x, y = req.hr_resize_x, req.hr_resize_y
        if x == 0 and y == 0:
            field, target = "hr_scale", (int(width * req.hr_scale), int(height * req.hr_scale))
        elif y == 0:
            field, target = "hr_resize_x", (x, x * height // width)
        elif x == 0:
            field, target = "hr_resize_y", (y * width // height, y)
        else:
            field, target = "hr_resize_x", (x, y)
        hr_width, hr_height = target[0] // 8 * 8, target[1] // 8 * 8
        s = self.settings
        if not (64 <= hr_width <= s.max_width and 64 <= hr_height <= s.max_height):
            raise InvalidInput(
                field, f"makes a hires size of {hr_width}x{hr_height}; allowed is 64 to {s.max_width}x{s.max_height}"
            )
        upscaler = req.hr_upscaler or "Latent"
        if upscaler not in LATENT_UPSCALE_MODES:
            try:
                self.runtime.upscalers.check(upscaler)
            except UnknownUpscalerError as error:
                latent = ", ".join(LATENT_UPSCALE_MODES)
                raise InvalidInput("hr_upscaler", f"{error}, {latent}", upscaler) from None
        if req.hr_checkpoint_name and self.runtime.require_registry().resolve(req.hr_checkpoint_name) != model.name:
            raise InvalidInput(
                "hr_checkpoint_name", "a second checkpoint for the hires pass is not supported; leave it empty",
                req.hr_checkpoint_name,
            )
        try:
            hr_sampler = resolve(
                req.hr_sampler_name or req.sampler_name or req.sampler_index, req.hr_scheduler or req.scheduler
            )
        except UnknownSamplerError as error:
            raise InvalidInput("hr_sampler_name", str(error), req.hr_sampler_name) from None
        steps = req.hr_second_pass_steps or req.steps
        if steps > s.max_steps:
            raise InvalidInput("hr_second_pass_steps", f"must be at most {s.max_steps}, got {steps}", steps)
        strength = 0.7 if req.denoising_strength is None else req.denoising_strength
        return HiresSpec(hr_width, hr_height, upscaler, steps, strength, hr_sampler)

    @staticmethod
    def _mask(req: Img2ImgRequest, mask: Image.Image | None, width: int, height: int) -> Image.Image | None:
        if mask is None:
            return None
        mask = fit(mask.convert("L"), width, height, req.resize_mode).convert("L")
        if req.inpainting_mask_invert:
            mask = ImageOps.invert(mask)
        if req.mask_blur:
            mask = mask.filter(ImageFilter.GaussianBlur(req.mask_blur))
        return mask

    # -- running ----------------------------------------------------------------------

    async def generate(self, req: GenerationRequest, is_disconnected: DisconnectCheck) -> GenerationResponse:
        """Validates, queues and describes one request; if `is_disconnected()` turns true
        while it waits, its work is cancelled and ClientDisconnected raised.

        The order bounds what a client can make the replica do: cheap checks first (a 4xx
        costs nothing), then a queue slot (a 429 when the queue is full, before any heavy
        work), and only then, on worker threads, decoding the images and loading a
        checkpoint the request names, so a request that is refused never loads one."""
        checkpoint = self._checkpoint_for(req)
        loaded = self.runtime.require_registry().loaded(checkpoint)
        self.validate(req, loaded)
        size = _output_size(req, loaded)
        async with self.runtime.admission.slot():
            decoded = await self._decoding(self.decode_images, req, size)
            model = await self.runtime.load(checkpoint)
            prepared = await self._decoding(self.prepare, req, model, decoded)
            del decoded  # the originals: only the fitted copies are kept while queued
            result = await self.runtime.submit_watching_disconnect(prepared.key, prepared.tasks, is_disconnected)
        # Kept only once the request was accepted and ran: a 4xx or a 429 changes nothing.
        if req.override_settings and not req.override_settings_restore_afterwards:
            self._keep_overrides(req, model)
        # Interrupted: A1111 answers 200 with the images made so far (possibly none).
        return await self._respond(req, model, prepared, result)

    async def _respond(
        self, req: GenerationRequest, model: LoadedModel, prepared: Prepared, result: JobResult
    ) -> GenerationResponse:
        """The response and the history entry. Each image's PNG is its own item on the
        encode threads: zlib releases the GIL, so the four PNGs of a `batch_size: 4`
        request (StableStudio's default) take about one PNG's time, not four."""
        images = result.images
        infotexts = [
            infotext(req, model, prepared.key, prepared.seeds[i], prepared.subseeds[i]) for i in range(len(images))
        ]
        history = self.history if req.save_images else None  # send_images: false still saves, as A1111 does
        encoded: list[str] = []
        if req.send_images or history is not None:
            pngs = (self._encoding(encode_png, image, text) for image, text in zip(images, infotexts, strict=True))
            encoded = list(await asyncio.gather(*pngs))
        response = describe(
            req, model, prepared.key, prepared.seeds, prepared.subseeds, infotexts, encoded, interrupted=result.interrupted
        )
        if history is not None and encoded:
            hires = prepared.key.hires
            width, height = (hires.width, hires.height) if hires is not None else (prepared.key.width, prepared.key.height)
            history.add(encoded, prepared.seeds, width, height)
        return response

    async def _decoding(self, function, *args, **kwargs):
        """Decoding and resizing on a worker thread, at most DECODE_THREADS at a time, so
        the event loop keeps answering /healthz."""
        if self._decode_limiter is None:
            self._decode_limiter = anyio.CapacityLimiter(DECODE_THREADS)
        return await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs), limiter=self._decode_limiter)

    async def _encoding(self, function, *args, **kwargs):
        """PNG encoding on a worker thread, at most ENCODE_THREADS at a time."""
        if self._encode_limiter is None:
            self._encode_limiter = anyio.CapacityLimiter(ENCODE_THREADS)
        return await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs), limiter=self._encode_limiter)

    def _keep_overrides(self, req: GenerationRequest, model: LoadedModel) -> None:
        """`override_settings_restore_afterwards: false`: as in A1111, the overrides stay
        set after this request (the checkpoint becomes the current one, other options are
        what GET /sdapi/v1/options reports)."""
        if req.override_settings.get("sd_model_checkpoint"):
            self.runtime.current_model = model.name
        self.a1111.store(req.override_settings)


def _output_size(req: GenerationRequest, model: LoadedModel | None) -> tuple[int, int] | None:
    """The images' width and height, where known without loading a checkpoint."""
    if model is not None:
        native_width, native_height = model.native_size
        return req.width or native_width, req.height or native_height
    if req.width and req.height:
        return req.width, req.height
    return None
