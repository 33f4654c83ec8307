"""Dynamic batching: the async loop that runs what `planner.BatchPlanner` plans.

One worker task asks the planner for the next batch (waiting for arrivals while the
planner's batch window says so) and runs it as one pipeline call on a worker thread, so
the event loop stays free for health checks and progress. Each image has its own seed,
so batching never changes which noise an image starts from.

Failures stay with their batch: an out-of-memory error splits the batch in halves and
retries (`engine/oom.py`), any other error fails only the jobs in that batch. Interrupt
and skip stop the running call after its current step (A1111's `interrupt`/`skip`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from ..engine.generate import (
    BatchKey,
    GenerationInterrupted,
    ImageTask,
    effective_steps,
)
from ..engine.oom import BatchRunner, run_halving_on_oom
from ..errors import (
    GenerationFailed,
    OutOfMemory,
    QueueFull,
    ShuttingDown,
    Stalled,
    WorkerStopped,
)
from .pipeline_thread import PipelineThread
from .planner import Batch, BatchPlanner, Completion, Job, JobResult

__all__ = ["BatchObserver", "BatchRunner", "Batcher", "JobResult", "Progress"]

log = logging.getLogger(__name__)


class BatchObserver(Protocol):
    def batch_started(self, size: int) -> None: ...
    def batch_finished(self, size: int, steps: int, seconds: float) -> None: ...
    def batch_failed(self, size: int, kind: str) -> None: ...
    def queue_changed(self, depth: int, waiting: int, running: int) -> None: ...
    def request_rejected(self) -> None: ...


@dataclass
class Progress:
    """What `/sdapi/v1/progress` reports about the running pipeline call."""

    active: bool = False
    job_count: int = 0
    step: int = 0
    total_steps: int = 0
    images_total: int = 0
    started_at: float = 0.0
    # time.monotonic() of the call's start or its latest step: how long it has been stuck.
    advanced_at: float = 0.0

    @property
    def fraction(self) -> float:
        """Steps done of the call's steps: its images are denoised together."""
        if not self.active or not self.images_total or not self.total_steps:
            return 0.0
        return min(1.0, self.step / self.total_steps)


class Batcher:
    def __init__(
        self,
        run: BatchRunner,
        *,
        max_batch_size: int,
        window_seconds: float,
        queue_size: int,
        observer: BatchObserver | None = None,
        stall_seconds: float = 0.0,
    ):
        self._run = run
        # The watchdog: a call without step progress this long (0: never) is given up on.
        self._stall_seconds = stall_seconds
        self.stalled = False
        self._pipeline_thread = PipelineThread()
        self._call: asyncio.Future | None = None  # the pipeline call in flight
        self._planner = BatchPlanner(max_batch_size=max_batch_size, window_seconds=window_seconds, queue_size=queue_size)
        self._observer = observer
        self._answers: dict[Job, asyncio.Future] = {}
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._interrupt = threading.Event()  # read by the pipeline's thread at every step
        self._skip_requested = False  # the stop asked of the running call is a skip
        self._accepting = True
        self._worker: asyncio.Task | None = None
        self.progress = Progress()

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="batcher")

    @property
    def alive(self) -> bool:
        return self._worker is not None and not self._worker.done()

    def stop_accepting(self) -> None:
        self._accepting = False

    async def drain(self) -> None:
        """Wait until every admitted job has finished."""
        await self._idle.wait()

    async def close(self) -> None:
        self.stop_accepting()
        call = self._call
        if call is not None and not call.done() and not self.stalled:
            # A call still running (nothing waits for it after a drain, but its thread
            # must not be inside the pipeline when the interpreter exits). A stalled call
            # is not waited for: it may never end.
            await asyncio.wait({call})
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None

    # -- intake and control --------------------------------------------------------

    @property
    def depth(self) -> int:
        """Jobs admitted and not yet finished (waiting + running)."""
        return self._planner.depth

    @property
    def waiting(self) -> int:
        return self._planner.waiting

    @property
    def call_in_flight(self) -> bool:
        return self._call is not None and not self._call.done()

    def retry_after(self) -> int:
        """Seconds a refused client should wait (the planner's estimate)."""
        return self._planner.retry_after()

    async def submit(self, key: BatchKey, tasks: list[ImageTask]) -> JobResult:
        if not self._accepting:
            raise ShuttingDown("the server is shutting down")
        if self.stalled:
            raise Stalled("the generation worker is stuck in a pipeline call; this replica restarts soon")
        if not self.alive:
            # Without a worker an admitted job would wait forever; say so instead.
            raise WorkerStopped("the generation worker is not running")
        try:
            job = self._planner.admit(key, tasks)
        except QueueFull:
            if self._observer is not None:
                self._observer.request_rejected()
            raise
        answer = self._answers[job] = asyncio.get_running_loop().create_future()
        self._idle.clear()
        self._notify_queue()
        self._arrived.set()
        try:
            return await asyncio.shield(answer)
        except asyncio.CancelledError:
            self._cancel(job)
            raise

    def interrupt(self) -> None:
        """Stop the running batch after its current step (A1111 `interrupt`).

        The requests in that batch are the ones stopped: each is answered with the images
        it has, and a request split across several batches gets no further batch. That
        holds even when the pipeline call is past its last step (decoding) and so returns
        normally; requests still waiting in the queue are not touched.
        """
        if self._planner.interrupt_running():
            self._interrupt.set()

    def skip(self) -> None:
        """Stop the running pipeline call after its current step and go on (A1111 `skip`).

        Its images come back as far as they got, and a request split across several
        batches continues with its next one; nothing is marked interrupted. An interrupt
        of the same call wins.
        """
        if self._planner.running:
            self._skip_requested = True
            self._interrupt.set()

    def seconds_without_progress(self) -> float:
        """How long the running pipeline call has gone without finishing a step (0 when idle)."""
        progress = self.progress
        return time.monotonic() - progress.advanced_at if progress.active else 0.0

    def _cancel(self, job: Job) -> None:
        if self._planner.cancel(job):
            self._interrupt.set()  # nobody is waiting for the running batch any more
        self._answers.pop(job, None)
        self._after_change()

    def _answer(self, completions: list[Completion]) -> None:
        for job, result in completions:
            answer = self._answers.pop(job, None)
            if answer is None or answer.done():
                continue
            if isinstance(result, Exception):
                answer.set_exception(result)
            else:
                answer.set_result(result)
        self._after_change()

    def _after_change(self) -> None:
        if self._planner.depth == 0:
            self._idle.set()
        self._notify_queue()

    def _notify_queue(self) -> None:
        if self._observer is not None:
            planner = self._planner
            self._observer.queue_changed(planner.depth, planner.waiting, planner.running)

    # -- the worker ----------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            wait = self._planner.seconds_until_next_batch(time.monotonic())
            if wait is None or wait > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), wait)
                except asyncio.TimeoutError:
                    pass
                continue
            batch = self._planner.take_batch()
            try:
                await self._run_batch(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in the bookkeeping must not stop the worker for good
                log.exception("batch bookkeeping failed; failing the jobs it held")
                self._answer(self._planner.fail_running(GenerationFailed("internal error while batching")))

    async def _run_batch(self, batch: Batch) -> None:
        self._interrupt.clear()
        self._skip_requested = False
        steps = effective_steps(batch.key)
        self.progress = Progress(
            active=True,
            job_count=len(batch.jobs),
            total_steps=steps,
            images_total=batch.size,
            started_at=time.time(),
            advanced_at=time.monotonic(),
        )
        self._notify_queue()
        if self._observer is not None:
            self._observer.batch_started(batch.size)
        started = time.perf_counter()
        images: list | None = None
        failure: GenerationFailed | None = None
        interrupted = stopped_early = False
        try:
            call = self._call = self._pipeline_thread.submit(
                run_halving_on_oom, self._run, batch.key, batch.tasks, self._on_step, batch.wanted
            )
            images = await self._watch(call)
        except GenerationInterrupted as stop:
            images, stopped_early = stop.images, True
            # A skip stops this call only; its images count as made. An interrupt (or a
            # skip that an interrupt followed) stops the requests themselves.
            interrupted = not self._skip_requested or any(job.interrupted for job in batch.jobs)
        except Exception as error:  # the batch fails, the server goes on
            failure = _as_failure(error)
        except asyncio.CancelledError as error:
            worker = asyncio.current_task()  # this coroutine runs as the worker task
            if worker is not None and worker.cancelling():
                raise  # close() is stopping the worker
            # Raised inside the pipeline call, on its thread: that is a failed batch like
            # any other, not a reason for the worker to stop (every admitted request would
            # then wait forever, and a drain with them).
            failure = _as_failure(error)
        seconds = time.perf_counter() - started
        if failure is not None:
            if not isinstance(failure, OutOfMemory):
                log.error("generation failed: %r", failure.__cause__ or failure, exc_info=failure.__cause__ or failure)
            if self._observer is not None:
                self._observer.batch_failed(batch.size, failure.kind)
        else:
            self._planner.record_speed(seconds, batch.size)
            assert images is not None  # no failure: the call returned its images, or an interrupt its partial ones
            if self._observer is not None:
                # Steps per image: all of them unless stopped early (the runner may not
                # report progress, e.g. a wrapped runner in tests), else as far as it got.
                made = sum(image is not None for image in images)
                done_steps = self.progress.step if stopped_early else steps
                self._observer.batch_finished(made, done_steps * made, seconds)
        self.progress = Progress()
        self._answer(self._planner.finish(batch, images, now=time.monotonic(), failure=failure, interrupted=interrupted))

    # -- the watchdog --------------------------------------------------------------

    async def _watch(self, call: asyncio.Future) -> list:
        """The call's result. Without step progress for `stall_seconds`, its requests and
        every queued one are failed with Stalled, and new ones refused, at once: the
        interrupt flag the step callback reads cannot stop a call stuck inside one step
        (a hung GPU kernel), and a thread cannot be killed. The worker then waits for the
        call; if it ever ends, the batcher serves again. Until then /readyz says wedged,
        and /healthz fails after twice `stall_seconds` so that the pod is restarted."""
        if not self._stall_seconds:
            return await call
        check_every = min(1.0, self._stall_seconds / 4)
        while True:
            done, _ = await asyncio.wait({call}, timeout=check_every)
            if done:
                if self.stalled:
                    self.stalled = False
                    log.warning("the stuck pipeline call has ended; serving again")
                return call.result()
            if not self.stalled and self.seconds_without_progress() > self._stall_seconds:
                self._give_up_on_stuck_call()

    def _give_up_on_stuck_call(self) -> None:
        self.stalled = True
        self._interrupt.set()  # should the call ever take another step, it stops there
        failure = Stalled(
            f"the generation worker is stuck: no step progress for {self.seconds_without_progress():.0f}s; "
            "this replica restarts soon"
        )
        log.error(
            "a pipeline call has made no step progress for %.0fs (--stall-seconds %g): failing %d request(s) "
            "with 503 and refusing new ones; /readyz says wedged, /healthz fails after %gs",
            self.seconds_without_progress(), self._stall_seconds, len(self._answers), 2 * self._stall_seconds,
        )
        for job in list(self._answers):
            self._planner.cancel(job)
            answer = self._answers.pop(job)
            if not answer.done():
                answer.set_exception(failure)
        self._after_change()

    def _on_step(self, step: int, total: int) -> bool:
        """On the pipeline's thread after every step: records progress; True stops the call."""
        self.progress.step = step
        self.progress.total_steps = total
        self.progress.advanced_at = time.monotonic()
        return self._interrupt.is_set()

    async def run_on_pipeline_thread(self, function, *args):
        """`function(*args)` on the thread every pipeline call runs on (the warm-up's
        compiled graphs must be recorded on the thread that replays them)."""
        return await self._pipeline_thread.submit(function, *args)


def _as_failure(error: BaseException) -> GenerationFailed:
    if isinstance(error, GenerationFailed):
        return error
    failure = GenerationFailed(f"generation failed: {type(error).__name__}")
    failure.__cause__ = error
    return failure
