"""Running a batch at its bucket size: padded with copies of its last task, whose images
are dropped (see `buckets.py` for why). Used by the server's runner and by warm-up, so
both run exactly the shapes that were compiled."""

from __future__ import annotations

from typing import Any, Callable

from .buckets import bucket_for
from .generate import BatchKey, GenerationInterrupted, ImageTask, StepCallback, run_batch
from .loading import LoadedModel

RunBatch = Callable[[LoadedModel, BatchKey, list[ImageTask], "StepCallback | None"], list[Any]]


def padded_tasks(tasks: list[ImageTask], buckets: tuple[int, ...]) -> list[ImageTask]:
    """`tasks` and, after them, copies of the last one up to its bucket's size."""
    size = bucket_for(len(tasks), buckets)
    return list(tasks) + [tasks[-1]] * (size - len(tasks))


def run_bucketed(
    model: LoadedModel,
    key: BatchKey,
    tasks: list[ImageTask],
    on_step: StepCallback | None = None,
    *,
    run: RunBatch = run_batch,
) -> list[Any]:
    """`run(model, key, tasks, on_step)`, padded to a bucket when the model's fast path says so.

    The result lines up with `tasks` (the padding's images are dropped, partial results
    of an interrupt included).
    """
    config = model.fast_path
    if config is None or not config.pad_batches or not tasks:
        return run(model, key, tasks, on_step)
    padded = padded_tasks(tasks, config.buckets)
    try:
        images = run(model, key, padded, on_step)
    except GenerationInterrupted as stop:
        raise GenerationInterrupted(list(stop.images)[: len(tasks)]) from None
    return list(images)[: len(tasks)]
