"""What runs next, and when: the batcher's decisions, with no threads and no event loop.

Requests ("jobs") are admitted up to `queue_size` (waiting + running); past that `admit`
raises `QueueFull` at once, with a Retry-After from the recent speed. The oldest job
heads the queue; jobs with the same `BatchKey` run together, up to `max_batch_size`
images per pipeline call, and a job larger than that is split across calls. The head
waits for company for at most `window_seconds`, and only in a busy period (see
`seconds_until_next_batch`). Every method that depends on time takes `now`
(`time.monotonic()`), so tests drive it with plain numbers.

`serving/batcher.py` runs what this plans; nothing here touches a pipeline.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Union

from ..engine.generate import BatchKey, ImageTask
from ..errors import GenerationFailed, QueueFull

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    images: list[Any]
    interrupted: bool = False


@dataclass(eq=False)
class Job:
    key: BatchKey
    tasks: list[ImageTask]
    results: list[Any] = field(init=False)
    next_task: int = 0  # tasks before this one are in a batch already
    finished_tasks: int = 0
    interrupted: bool = False
    cancelled: bool = False  # its client went away
    done: bool = False  # answered (a result or a failure)

    def __post_init__(self):
        self.results = [None] * len(self.tasks)

    @property
    def unscheduled(self) -> int:
        return len(self.tasks) - self.next_task


@dataclass(frozen=True)
class Batch:
    """One pipeline call: (job, task index) pairs that share `key`."""

    key: BatchKey
    picks: tuple[tuple[Job, int], ...]

    @property
    def tasks(self) -> list[ImageTask]:
        return [job.tasks[index] for job, index in self.picks]

    @property
    def jobs(self) -> list[Job]:
        return list(dict.fromkeys(job for job, _ in self.picks))

    @property
    def size(self) -> int:
        return len(self.picks)

    def wanted(self, place: int) -> bool:
        """Whether the image at `place` still has a client waiting for it."""
        return not self.picks[place][0].cancelled


# What a finished job is answered with: its images, or why there are none.
Completion = tuple[Job, Union[JobResult, Exception]]


class BatchPlanner:
    def __init__(self, *, max_batch_size: int, window_seconds: float, queue_size: int):
        self.max_batch_size = max_batch_size
        self.window_seconds = window_seconds
        self.queue_size = queue_size
        self._waiting: deque[Job] = deque()
        self._running: list[Job] = []
        self._admitted = 0
        self._seconds_per_image = 1.0  # running estimate, for Retry-After
        self._last_batch_ended = float("-inf")
        # The queue head's key and the time it stops waiting for company, once decided.
        self._window: tuple[BatchKey, float] | None = None

    # -- counts --------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Jobs admitted and not yet answered (waiting + running)."""
        return self._admitted

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    # -- intake --------------------------------------------------------------------

    def admit(self, key: BatchKey, tasks: list[ImageTask]) -> Job:
        if self._admitted >= self.queue_size:
            raise QueueFull(self.retry_after())
        job = Job(key, list(tasks))
        self._admitted += 1
        self._waiting.append(job)
        return job

    def retry_after(self) -> int:
        """Seconds until the queued images are likely done, 1 to 60."""
        queued_images = sum(len(j.tasks) for j in self._waiting) + sum(j.unscheduled for j in self._running)
        return max(1, min(60, round(queued_images * self._seconds_per_image / max(1, self.max_batch_size))))

    def cancel(self, job: Job) -> bool:
        """The client of `job` went away: it frees its queue slot now and gets no further
        batch. True when the running batch has nobody left waiting for it (stop it)."""
        if job.cancelled or job.done:
            return False
        job.cancelled = True
        if job in self._waiting:
            self._waiting.remove(job)
        self._admitted -= 1
        return bool(self._running) and all(j.cancelled for j in self._running)

    def interrupt_running(self) -> bool:
        """Marks every job of the running batch interrupted; False when nothing runs."""
        for job in self._running:
            job.interrupted = True
        return bool(self._running)

    # -- the next batch ------------------------------------------------------------

    def seconds_until_next_batch(self, now: float) -> float | None:
        """None: nothing waits. 0: `take_batch` now. Otherwise how long the head may still
        wait for company (call again when a job arrives or that time is up).

        The head waits only in a busy period (a batch ended within the last window): that
        is when clients come back together, e.g. everyone answered by the last batch
        resubmitting. A request that finds the server idle runs at once: waiting would
        only add latency to a lone client, and whatever arrives meanwhile is batched next.
        """
        if not self._waiting:
            self._window = None
            return None
        if self._window is None:
            busy = now - self._last_batch_ended <= self.window_seconds
            self._window = (self._waiting[0].key, now + (self.window_seconds if busy else 0.0))
        key, deadline = self._window
        if self._compatible_images(key) >= self.max_batch_size:
            return 0.0
        return max(0.0, deadline - now)

    def _compatible_images(self, key: BatchKey) -> int:
        return sum(j.unscheduled for j in self._waiting if j.key == key)

    def take_batch(self) -> Batch:
        """The head's key, its oldest unscheduled images first, up to max_batch_size."""
        self._window = None
        key = self._waiting[0].key
        picks: list[tuple[Job, int]] = []
        for job in list(self._waiting):
            if job.key != key:
                continue
            while job.unscheduled and len(picks) < self.max_batch_size:
                picks.append((job, job.next_task))
                job.next_task += 1
            if not job.unscheduled:
                self._waiting.remove(job)
            if job not in self._running:
                self._running.append(job)
            if len(picks) == self.max_batch_size:
                break
        return Batch(key, tuple(picks))

    # -- results -------------------------------------------------------------------

    def record_speed(self, seconds: float, images: int) -> None:
        self._seconds_per_image = 0.8 * self._seconds_per_image + 0.2 * seconds / max(1, images)

    def finish(
        self,
        batch: Batch,
        images: list[Any] | None,
        *,
        now: float,
        failure: GenerationFailed | None = None,
        interrupted: bool = False,
    ) -> list[Completion]:
        """Files a finished call's images (lined up with `batch.picks`; None where an image
        was left out) or its failure; returns the jobs that are now answered.

        `interrupted`: the call was stopped by an interrupt, so its jobs end here with what
        they have. A job split across calls otherwise goes on with its next batch.
        """
        self._last_batch_ended = now
        if images is not None:
            # An interrupt's partial results may stop short of the picks; the picks
            # after them get no image.
            for (job, index), image in zip(batch.picks, images, strict=False):
                if image is None:
                    continue  # left out of an out-of-memory retry: its request was cancelled
                job.results[index] = image
                job.finished_tasks += 1
        done: list[Completion] = []
        for job in batch.jobs:
            if job.cancelled or job.done:
                self._drop_running(job)
            elif failure is not None:
                done.append(self._complete(job, failure))
            elif interrupted or (job.interrupted and job.finished_tasks < len(job.tasks)):
                job.interrupted = True
                # A1111 returns what was made when interrupted; the job's other images are dropped.
                done.append(self._complete(job, JobResult(self._made(job), interrupted=True)))
            elif job.finished_tasks == len(job.tasks):
                done.append(self._complete(job, JobResult(self._made(job))))
            elif job.unscheduled:
                self._drop_running(job)  # part of it is still waiting for the next batch
            else:
                # Every image was scheduled, yet some never came back (a runner that returned
                # fewer images than it was given): nothing else would ever answer this job.
                log.error("the pipeline returned %d images for %d", len(images or []), batch.size)
                done.append(self._complete(job, GenerationFailed("generation failed: images missing from the pipeline's result")))
        return done

    def fail_running(self, failure: GenerationFailed) -> list[Completion]:
        """Answers every running job with `failure` (the worker's bookkeeping broke)."""
        done: list[Completion] = []
        for job in list(self._running):
            if job.cancelled or job.done:
                self._drop_running(job)
            else:
                done.append(self._complete(job, failure))
        return done

    @staticmethod
    def _made(job: Job) -> list[Any]:
        return [image for image in job.results if image is not None]

    def _complete(self, job: Job, result: JobResult | Exception) -> Completion:
        if job in self._waiting:
            self._waiting.remove(job)
        self._drop_running(job)
        job.done = True
        self._admitted -= 1
        return job, result

    def _drop_running(self, job: Job) -> None:
        if job in self._running:
            self._running.remove(job)
