"""Warm before ready: every (size x batch bucket) the server will run is run once before
`/readyz` says ready, so compiling (and CUDA graph capture) happens before traffic.

`--warmup-sizes` (`SD_WARMUP_SIZES`):
- `auto` (the default): the model's native size, when the model is compiled; nothing
  when it runs eager (there is nothing to warm: the first request pays only cuDNN's
  algorithm choice, well under a second).
- `native`, `WIDTHxHEIGHT`, ... (comma-separated): those sizes, compiled or not.
- `none`: no warm-up; each new shape compiles on its first request.

Each warm-up call is a txt2img batch at the default sampler and CFG 7 (CFG doubles the
UNet batch, as for almost every request), `WARMUP_STEPS` steps: the compiled graphs do
not depend on the step count, and CUDA graph trees record on a shape's second call, so
three steps warm, record and replay. Other shapes (CFG <= 1, img2img of another size, an
inpainting UNet) compile on first use.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from .generate import BatchKey, ImageTask
from .samplers import resolve

log = logging.getLogger(__name__)

WARMUP_STEPS = 3
WARMUP_CFG = 7.0
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


def warmup_plan(sizes: list[tuple[int, int]], buckets: tuple[int, ...]) -> list[WarmupCall]:
    return [WarmupCall(width, height, batch) for width, height in sizes for batch in buckets]


def warmup_batch(model_name: str, call: WarmupCall) -> tuple[BatchKey, list[ImageTask]]:
    key = BatchKey(
        model=model_name,
        kind="txt2img",
        width=call.width,
        height=call.height,
        steps=WARMUP_STEPS,
        sampler=resolve(None, None),
        cfg_scale=WARMUP_CFG,
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
) -> None:
    """Runs every call of `plan` through `run`, counting in `progress` (read by /readyz)."""
    started = time.perf_counter()
    progress.total, progress.done, progress.active = len(plan), 0, bool(plan)
    try:
        for call in plan:
            call_started = time.perf_counter()
            key, tasks = warmup_batch(model_name, call)
            run(key, tasks)
            progress.done += 1
            log.info(
                "warm-up %d/%d: %dx%d batch %d in %.1fs",
                progress.done, progress.total, call.width, call.height, call.batch, time.perf_counter() - call_started,
            )
    finally:
        progress.active = False
        progress.seconds = time.perf_counter() - started
