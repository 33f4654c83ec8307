"""Out-of-memory handling around a batch runner: halve the batch until it fits.

The serving layer calls this on its worker thread and never sees a torch error: an
out-of-memory error becomes smaller calls, and when even one image does not fit, the
domain `OutOfMemory` (a 503 "try a smaller size" to the client).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Protocol

from ..errors import OutOfMemory
from .generate import BatchKey, GenerationInterrupted, ImageTask, StepCallback

log = logging.getLogger(__name__)


class BatchRunner(Protocol):
    """Runs one pipeline call; raises GenerationInterrupted if `on_step` asked to stop."""

    def __call__(self, key: BatchKey, tasks: list[ImageTask], on_step: StepCallback) -> list[Any]: ...


def is_out_of_memory(error: BaseException) -> bool:
    try:
        import torch

        if isinstance(error, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is always there in the server
        pass
    return isinstance(error, MemoryError) or "out of memory" in str(error).lower()


def free_accelerator_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def run_halving_on_oom(
    run: BatchRunner,
    key: BatchKey,
    tasks: list[ImageTask],
    on_step: StepCallback,
    wanted: Callable[[int], bool] = lambda index: True,
) -> list[Any]:
    """`run(key, tasks, on_step)`; on out of memory, the batch again in halves, down to one image.

    The result lines up with `tasks`. A retry leaves out the tasks `wanted(index)` no
    longer wants (their requests were cancelled meanwhile; their places hold None), so a
    disconnect during a retry stops that request's work as it does in the queue. An
    interrupt during a retry keeps the images the finished halves made.
    """

    def attempt(indexes: list[int]) -> list[Any]:
        try:
            return list(run(key, [tasks[i] for i in indexes], on_step))
        except GenerationInterrupted:
            raise
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            if len(indexes) == 1:
                raise OutOfMemory("out of memory while generating even one image; try a smaller size") from error
            log.warning("out of memory at batch size %d; retrying in halves", len(indexes))
            free_accelerator_memory()
            half = len(indexes) // 2
            first = retry(indexes[:half])
            try:
                second = retry(indexes[half:])
            except GenerationInterrupted as stop:
                raise GenerationInterrupted(first + stop.images) from None
            return first + second

    def retry(part: list[int]) -> list[Any]:
        images: list[Any] = [None] * len(part)
        live = [place for place, index in enumerate(part) if wanted(index)]
        if not live:
            return images
        try:
            made = attempt([part[place] for place in live])
        except GenerationInterrupted as stop:
            # An interrupt's partial results may stop short of `live` (run_extras stops
            # after the image it was on); the places after them stay None.
            for place, image in zip(live, stop.images, strict=False):
                images[place] = image
            raise GenerationInterrupted(images) from None
        for place, image in zip(live, made, strict=True):
            images[place] = image
        return images

    return attempt(list(range(len(tasks))))
