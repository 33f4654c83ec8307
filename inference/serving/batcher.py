"""Dynamic batching over a bounded queue.

Requests ("jobs") are admitted up to `queue_size` (waiting + running); past that `submit`
raises `QueueFull` at once, so a burst gets fast 429s instead of a hang. One worker task
takes the oldest job, waits at most `window` for compatible company (same `BatchKey`;
only in a busy period, see `_window_now`),
and runs up to `max_batch_size` images in one pipeline call on a worker thread (the event
loop stays free for health checks and progress). A job larger than `max_batch_size` is
split across calls. Each image has its own seed, so batching never changes which noise an
image starts from.

Failures stay with their batch: an out-of-memory error splits the batch in halves and
retries (down to one image), any other error fails only the jobs in that batch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol

from PIL import Image

from ..engine.generate import BatchKey, GenerationInterrupted, ImageTask, effective_steps

log = logging.getLogger(__name__)


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry in {retry_after}s")
        self.retry_after = retry_after


class ShuttingDown(Exception):
    pass


class GenerationFailed(Exception):
    def __init__(self, message: str, *, status: int = 500, kind: str = "GenerationError"):
        super().__init__(message)
        self.status = status
        self.kind = kind


def is_out_of_memory(error: BaseException) -> bool:
    try:
        import torch

        if isinstance(error, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is always there in the server
        pass
    return isinstance(error, MemoryError) or "out of memory" in str(error).lower()


class BatchRunner(Protocol):
    """Runs one pipeline call; raises GenerationInterrupted if `on_step` asked to stop."""

    def __call__(self, key: BatchKey, tasks: list[ImageTask], on_step: Callable[[int, int], bool]) -> list[Image.Image]: ...


class BatchObserver(Protocol):
    def batch_started(self, size: int) -> None: ...
    def batch_finished(self, size: int, steps: int, seconds: float) -> None: ...
    def batch_failed(self, size: int, kind: str) -> None: ...
    def queue_changed(self, depth: int, waiting: int, running: int) -> None: ...
    def request_rejected(self) -> None: ...


@dataclass
class JobResult:
    images: list[Image.Image]
    interrupted: bool = False


@dataclass(eq=False)
class _Job:
    key: BatchKey
    tasks: list[ImageTask]
    future: asyncio.Future
    results: list[Image.Image | None] = field(init=False)
    next_task: int = 0
    finished_tasks: int = 0
    interrupted: bool = False
    cancelled: bool = False

    def __post_init__(self):
        self.results = [None] * len(self.tasks)

    @property
    def unscheduled(self) -> int:
        return len(self.tasks) - self.next_task


@dataclass
class Progress:
    """What `/sdapi/v1/progress` reports about the running batch."""

    active: bool = False
    job_count: int = 0
    step: int = 0
    total_steps: int = 0
    images_done: int = 0
    images_total: int = 0
    started_at: float = 0.0
    # time.monotonic() of the call's start or its latest step: how long it has been stuck.
    advanced_at: float = 0.0

    @property
    def fraction(self) -> float:
        if not self.active or not self.images_total or not self.total_steps:
            return 0.0
        per_image = self.step / self.total_steps
        return min(1.0, (self.images_done + per_image * self._running_images) / self.images_total)

    _running_images: int = 0


class Batcher:
    def __init__(
        self,
        run: BatchRunner,
        *,
        max_batch_size: int,
        window_seconds: float,
        queue_size: int,
        observer: BatchObserver | None = None,
    ):
        self._run = run
        self.max_batch_size = max_batch_size
        self.window_seconds = window_seconds
        self.queue_size = queue_size
        self._observer = observer
        self._waiting: deque[_Job] = deque()
        self._admitted = 0
        self._running: list[_Job] = []
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._interrupt = threading.Event()
        self._skip_requested = False  # the stop asked of the running call is a skip
        self._accepting = True
        self._worker: asyncio.Task | None = None
        self._seconds_per_image = 1.0  # running estimate for Retry-After
        self._last_batch_ended = float("-inf")
        self.progress = Progress()

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="batcher")

    @property
    def alive(self) -> bool:
        return self._worker is not None and not self._worker.done()

    @property
    def accepting(self) -> bool:
        return self._accepting

    def stop_accepting(self) -> None:
        self._accepting = False

    async def drain(self) -> None:
        """Wait until every admitted job has finished."""
        await self._idle.wait()

    async def close(self) -> None:
        self.stop_accepting()
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None

    # -- intake --------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Jobs admitted and not yet finished (waiting + running)."""
        return self._admitted

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def interrupt(self) -> None:
        """Stop the running batch after its current step (A1111 `interrupt`).

        The requests in that batch are the ones stopped: each is answered with the images
        it has, and a request split across several batches gets no further batch. That
        holds even when the pipeline call is past its last step (decoding) and so returns
        normally; requests still waiting in the queue are not touched.
        """
        if self._running:
            for job in self._running:
                job.interrupted = True
            self._interrupt.set()

    def skip(self) -> None:
        """Stop the running pipeline call after its current step and go on (A1111 `skip`).

        Its images come back as far as they got, and a request split across several
        batches continues with its next one; nothing is marked interrupted. An interrupt
        of the same call wins.
        """
        if self._running:
            self._skip_requested = True
            self._interrupt.set()

    async def submit(self, key: BatchKey, tasks: list[ImageTask]) -> JobResult:
        if not self._accepting:
            raise ShuttingDown("the server is shutting down")
        if not self.alive:
            # Without a worker an admitted job would wait forever; say so instead.
            raise GenerationFailed("the generation worker is not running", status=503, kind="WorkerStopped")
        if self._admitted >= self.queue_size:
            if self._observer is not None:
                self._observer.request_rejected()
            raise QueueFull(self._retry_after())
        job = _Job(key, list(tasks), asyncio.get_running_loop().create_future())
        self._admitted += 1
        self._idle.clear()
        self._waiting.append(job)
        self._notify_queue()
        self._arrived.set()
        try:
            return await asyncio.shield(job.future)
        except asyncio.CancelledError:
            self._cancel(job)
            raise

    def _retry_after(self) -> int:
        queued_images = sum(len(j.tasks) for j in self._waiting) + sum(j.unscheduled for j in self._running)
        return max(1, min(60, round(queued_images * self._seconds_per_image / max(1, self.max_batch_size))))

    def _cancel(self, job: _Job) -> None:
        if job.cancelled or job.future.done():
            return
        job.cancelled = True
        if job in self._waiting:
            self._waiting.remove(job)
        self._release(job)
        if self._running and all(j.cancelled for j in self._running):
            self._interrupt.set()  # nobody is waiting for this batch any more

    def _release(self, job: _Job) -> None:
        self._admitted -= 1
        if self._admitted == 0:
            self._idle.set()
        self._notify_queue()

    def _notify_queue(self) -> None:
        if self._observer is not None:
            self._observer.queue_changed(self._admitted, len(self._waiting), len(self._running))

    # -- the worker ----------------------------------------------------------------

    def _compatible_images(self, key: BatchKey) -> int:
        return sum(j.unscheduled for j in self._waiting if j.key == key)

    async def _work(self) -> None:
        while True:
            while not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
            key = self._waiting[0].key
            deadline = time.monotonic() + self._window_now()
            while self._compatible_images(key) < self.max_batch_size and self._waiting:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            if not self._waiting:
                continue  # everything waiting was cancelled during the window
            try:
                await self._run_one_batch(self._waiting[0].key)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in the bookkeeping must not stop the worker for good
                log.exception("batch bookkeeping failed; failing the jobs it held")
                self._fail_running(GenerationFailed("internal error while batching", status=500))

    def _window_now(self) -> float:
        """How long the head of the queue waits for company.

        Only in a busy period (a batch ended within the last window): that is when clients
        come back together, e.g. everyone answered by the last batch resubmitting. A
        request that finds the server idle runs at once: waiting would only add latency
        to a lone client, and whatever arrives meanwhile is batched next.
        """
        busy = time.monotonic() - self._last_batch_ended <= self.window_seconds
        return self.window_seconds if busy else 0.0

    def _fail_running(self, failure: GenerationFailed) -> None:
        for job in list(self._running):
            if job.cancelled or job.future.done():
                self._drop_running(job)
            else:
                self._complete(job, failure)

    def _take_batch(self, key: BatchKey) -> list[tuple[_Job, int]]:
        picked: list[tuple[_Job, int]] = []
        for job in list(self._waiting):
            if job.key != key:
                continue
            while job.unscheduled and len(picked) < self.max_batch_size:
                picked.append((job, job.next_task))
                job.next_task += 1
            if not job.unscheduled:
                self._waiting.remove(job)
            if job not in self._running:
                self._running.append(job)
            if len(picked) == self.max_batch_size:
                break
        return picked

    async def _run_one_batch(self, key: BatchKey) -> None:
        picked = self._take_batch(key)
        jobs = list(dict.fromkeys(job for job, _ in picked))
        self._interrupt.clear()
        self._skip_requested = False
        self.progress = Progress(
            active=True,
            job_count=len(jobs),
            total_steps=effective_steps(key),
            images_total=len(picked),
            started_at=time.time(),
            advanced_at=time.monotonic(),
        )
        self.progress._running_images = len(picked)
        self._notify_queue()
        if self._observer is not None:
            self._observer.batch_started(len(picked))
        started = time.perf_counter()
        outcome: list[Image.Image] | BaseException
        interrupted = stopped_early = False
        try:
            outcome = await asyncio.to_thread(self._run_with_retries, key, picked)
        except GenerationInterrupted as stop:
            outcome, stopped_early = stop.images, True
            # A skip stops this call only; its images count as made. An interrupt (or a
            # skip that an interrupt followed) stops the requests themselves.
            interrupted = not self._skip_requested or any(job.interrupted for job in jobs)
        except Exception as error:  # the batch fails, the server goes on
            outcome = error
        except asyncio.CancelledError as error:
            if asyncio.current_task().cancelling():
                raise  # close() is stopping the worker
            # Raised inside the pipeline call, on its thread: that is a failed batch like
            # any other, not a reason for the worker to stop (every admitted request would
            # then wait forever, and a drain with them).
            outcome = error
        seconds = time.perf_counter() - started
        if isinstance(outcome, BaseException):
            if self._observer is not None:
                self._observer.batch_failed(len(picked), self._as_failure(outcome).kind)
        else:
            self._seconds_per_image = 0.8 * self._seconds_per_image + 0.2 * seconds / max(1, len(picked))
            # Steps per image: all of them unless interrupted (the runner may not report
            # progress, e.g. a wrapped runner in tests), else as far as the batch got.
            steps = self.progress.step if stopped_early else effective_steps(key)
            if self._observer is not None:
                made = sum(image is not None for image in outcome)
                self._observer.batch_finished(made, steps * made, seconds)
        self.progress = Progress()
        self._last_batch_ended = time.monotonic()
        self._finish(picked, jobs, outcome, interrupted)

    def _finish(self, picked, jobs, outcome, interrupted: bool) -> None:
        if isinstance(outcome, BaseException):
            failure = self._as_failure(outcome)
            if failure.status >= 500 and failure.kind != "OutOfMemory":
                log.error("generation failed: %r", outcome, exc_info=outcome)
        if not isinstance(outcome, BaseException):
            for (job, index), image in zip(picked, outcome):
                if image is None:
                    continue  # left out of an out-of-memory retry: its request was cancelled
                job.results[index] = image
                job.finished_tasks += 1
        for job in jobs:
            if job.cancelled or job.future.done():
                self._drop_running(job)
                continue
            if isinstance(outcome, BaseException):
                self._complete(job, failure)
            elif interrupted or (job.interrupted and job.finished_tasks < len(job.tasks)):
                job.interrupted = True
                # A1111 returns what was made when interrupted; the job's other images are dropped.
                self._complete(job, JobResult([img for img in job.results if img is not None], interrupted=True))
            elif job.finished_tasks == len(job.tasks):
                self._complete(job, JobResult([img for img in job.results if img is not None]))
            elif job.unscheduled:
                self._drop_running(job)  # part of it is still waiting for the next batch
            else:
                # Every image was scheduled, yet some never came back (a runner that returned
                # fewer images than it was given): nothing else would ever answer this job.
                log.error("the pipeline returned %d images for %d", len(outcome), len(picked))
                self._complete(job, GenerationFailed("generation failed: images missing from the pipeline's result"))

    def _complete(self, job: _Job, result: JobResult | Exception) -> None:
        if job in self._waiting:
            self._waiting.remove(job)
        self._drop_running(job)
        if isinstance(result, Exception):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)
        self._release(job)

    def _drop_running(self, job: _Job) -> None:
        if job in self._running:
            self._running.remove(job)
        self._notify_queue()

    @staticmethod
    def _as_failure(error: BaseException) -> GenerationFailed:
        if isinstance(error, GenerationFailed):
            return error
        if is_out_of_memory(error):
            return GenerationFailed(
                "out of memory while generating even one image; try a smaller size", status=503, kind="OutOfMemory"
            )
        return GenerationFailed(f"generation failed: {type(error).__name__}", status=500)

    def _run_with_retries(self, key: BatchKey, picked: list[tuple[_Job, int]]) -> list[Image.Image | None]:
        """Runs on the worker thread. On OOM, halves the batch until one image fits.

        The result lines up with `picked`. A retry leaves out the images of requests
        cancelled meanwhile (their clients are gone; their places hold None), so a
        disconnect during a retry stops that request's work as it does in the queue.
        """
        try:
            return list(self._run(key, [job.tasks[i] for job, i in picked], self._on_step))
        except GenerationInterrupted:
            raise
        except Exception as error:
            if not is_out_of_memory(error) or len(picked) == 1:
                raise
            log.warning("out of memory at batch size %d; retrying in halves", len(picked))
            _free_accelerator_memory()
            half = len(picked) // 2
            first = self._retry(key, picked[:half])
            try:
                second = self._retry(key, picked[half:])
            except GenerationInterrupted as stop:
                # Keep the finished half: an interrupt returns what was made.
                raise GenerationInterrupted(first + stop.images) from None
            return first + second

    def _retry(self, key: BatchKey, part: list[tuple[_Job, int]]) -> list[Image.Image | None]:
        """Part of a batch that ran out of memory, without the cancelled requests' images."""
        images: list[Image.Image | None] = [None] * len(part)
        live = [place for place, (job, _) in enumerate(part) if not job.cancelled]
        if not live:
            return images
        try:
            made = self._run_with_retries(key, [part[place] for place in live])
        except GenerationInterrupted as stop:
            for place, image in zip(live, stop.images):
                images[place] = image
            raise GenerationInterrupted(images) from None
        for place, image in zip(live, made):
            images[place] = image
        return images

    def seconds_without_progress(self) -> float:
        """How long the running pipeline call has gone without finishing a step (0 when idle)."""
        progress = self.progress
        return time.monotonic() - progress.advanced_at if progress.active else 0.0

    def _on_step(self, step: int, total: int) -> bool:
        self.progress.step = step
        self.progress.total_steps = total
        self.progress.advanced_at = time.monotonic()
        return self._interrupt.is_set()


def _free_accelerator_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
