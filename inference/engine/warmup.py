"""Warm before ready: every (size x batch bucket) the server will run is run once before
`/readyz` says ready, so compiling (and CUDA graph capture) happens before traffic.

`--warmup-sizes` (`SD_WARMUP_SIZES`):
- `auto` (the default): the model's native size, when the model is compiled; nothing
  when it runs eager (there is nothing to warm: the first request pays only cuDNN's
  algorithm choice, well under a second).
- `native`, `WIDTHxHEIGHT`, ... (comma-separated): those sizes, compiled or not.
- `none`: no warm-up; each new shape compiles on its first request.

Each warm-up call is a txt2img batch at the default sampler, `WARMUP_STEPS` steps: the
compiled graphs depend neither on the step count nor on the sampler (compiled_shapes.py
gives every sampler's timesteps one dtype), and CUDA graph trees record on a shape's
second call, so three steps warm, record and replay. The UNet's batch is the bucket
doubled with CFG (cfg_scale > 1, almost every request) and the bucket itself without it
(Turbo and LCM models at CFG 0 or 1): the plan runs every bucket with CFG 7, then, with
CFG 1, the buckets whose row count no CFG call had (with buckets 1, 2, 4: only 1).
img2img and inpainting at a warmed size run the same shapes. After warm-up the model's
compiled modules run only the shapes it ran; any other shape runs eager
(`compiled_shapes.py`).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from .compiled_shapes import CompiledShapes
from .generate import BatchKey, ImageTask
from .samplers import resolve

log = logging.getLogger(__name__)

WARMUP_STEPS = 3
WARMUP_CFG = 7.0
NO_CFG = 1.0  # diffusers guides only when guidance_scale > 1
_SIZE = re.compile(r"^(\d+)x(\d+)$")


def parse_warmup_sizes(values: list[str]) -> list[str]:
    """Normalised `--warmup-sizes` entries; ValueError naming a bad one."""
    cleaned = [value.strip().lower() for value in values if value.strip()]
    if not cleaned:
        return ["none"]
    for keyword in ("auto", "none"):
        if keyword in cleaned and len(cleaned) > 1:
            raise ValueError(f"{keyword!r} stands alone; got {', '.join(cleaned)}")
    for value in cleaned:
        if value in ("auto", "none", "native"):
            continue
        match = _SIZE.match(value)
        if not match:
            raise ValueError(f"{value!r} is not auto, none, native or WIDTHxHEIGHT (e.g. 512x512)")
        width, height = int(match[1]), int(match[2])
        if width % 8 or height % 8 or min(width, height) < 64:
            raise ValueError(f"{value!r}: width and height must be multiples of 8, at least 64")
    return cleaned


def warmup_sizes(values: list[str], native: tuple[int, int], compiled: bool) -> list[tuple[int, int]]:
    """The (width, height) pairs to warm, in order, without repeats."""
    values = parse_warmup_sizes(values)
    if values == ["none"] or (values == ["auto"] and not compiled):
        return []
    sizes: list[tuple[int, int]] = []
    for value in values:
        if value in ("auto", "native"):
            size = native
        else:
            width, height = value.split("x")
            size = (int(width), int(height))
        if size not in sizes:
            sizes.append(size)
    return sizes


@dataclass(frozen=True)
class WarmupCall:
    width: int
    height: int
    batch: int
    cfg_scale: float = WARMUP_CFG

    @property
    def unet_rows(self) -> int:
        return self.batch * 2 if self.cfg_scale > 1 else self.batch


def warmup_plan(sizes: list[tuple[int, int]], buckets: tuple[int, ...]) -> list[WarmupCall]:
    """Every size x bucket with CFG, then without CFG where that makes a UNet batch of a
    new size (see the module's docstring)."""
    guided = [WarmupCall(width, height, batch) for width, height in sizes for batch in buckets]
    rows = {call.unet_rows for call in guided}
    unguided = [
        WarmupCall(width, height, batch, NO_CFG) for width, height in sizes for batch in buckets if batch not in rows
    ]
    return guided + unguided


def warmup_batch(model_name: str, call: WarmupCall) -> tuple[BatchKey, list[ImageTask]]:
    key = BatchKey(
        model=model_name,
        kind="txt2img",
        width=call.width,
        height=call.height,
        steps=WARMUP_STEPS,
        sampler=resolve(None, None),
        cfg_scale=call.cfg_scale,
    )
    return key, [ImageTask(prompt="warm-up", negative_prompt="", seed=index) for index in range(call.batch)]


@dataclass
class WarmupProgress:
    """What `/readyz` reports while warming."""

    total: int = 0
    done: int = 0
    active: bool = False
    seconds: float = 0.0


def warm_up(
    run: Callable[[BatchKey, list[ImageTask]], Any],
    model_name: str,
    plan: list[WarmupCall],
    progress: WarmupProgress,
    shapes: CompiledShapes | None = None,
) -> None:
    """Runs every call of `plan` through `run`, counting in `progress` (read by /readyz),
    then closes `shapes`: from then on only the shapes warmed here run compiled."""
    started = time.perf_counter()
    progress.total, progress.done, progress.active = len(plan), 0, bool(plan)
    try:
        for call in plan:
            call_started = time.perf_counter()
            key, tasks = warmup_batch(model_name, call)
            run(key, tasks)
            progress.done += 1
            log.info(
                "warm-up %d/%d: %dx%d batch %d, CFG %g, in %.1fs",
                progress.done, progress.total, call.width, call.height, call.batch, call.cfg_scale,
                time.perf_counter() - call_started,
            )
        if shapes is not None and plan:
            shapes.close()
    finally:
        progress.active = False
        progress.seconds = time.perf_counter() - started
