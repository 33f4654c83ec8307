"""Races between the batcher's worker and its clients (interrupt, disconnect), on the
Batcher alone: a scripted runner stands in for the pipeline and holds each call at a
threading.Event, so every interleaving here is forced, never timed."""

from __future__ import annotations

import asyncio
import threading

from inference.engine.generate import BatchKey, GenerationInterrupted, ImageTask
from inference.engine.samplers import resolve
from inference.errors import GenerationFailed
from inference.serving.batcher import Batcher

KEY = BatchKey(model="m", kind="txt2img", width=64, height=64, steps=3, sampler=resolve(None, None), cfg_scale=7.0)
OTHER_KEY = BatchKey(model="m", kind="txt2img", width=72, height=64, steps=3, sampler=resolve(None, None), cfg_scale=7.0)
HANG_S = 60  # a hang detector, not a performance assertion


def _tasks(*prompts: str) -> list[ImageTask]:
    return [ImageTask(prompt=prompt, negative_prompt="", seed=0) for prompt in prompts]


class Observer:
    def __init__(self):
        self.images = 0
        self.depths: list[int] = []

    def batch_started(self, size):
        pass

    def batch_finished(self, size, steps, seconds):
        self.images += size

    def batch_failed(self, size, kind):
        pass

    def queue_changed(self, depth, waiting, running):
        self.depths.append(depth)

    def request_rejected(self):
        pass


class ScriptedRunner:
    """Runs every denoising step (asking `on_step` whether to stop, as the pipeline does),
    then holds the call, as a pipeline does while it decodes the images, until the test
    lets it through (`let_one_through`) or opens the way for good (`open`).

    `fault(tasks)` may raise before the steps (out of memory). Images stand in as prompts."""

    def __init__(self, fault=None):
        self.calls: list[list[str]] = []
        self.holding = threading.Event()  # set while a call is held
        self._permits = threading.Semaphore(0)
        self._open = threading.Event()
        self._fault = fault

    def let_one_through(self) -> None:
        self._permits.release()

    def open(self) -> None:
        self._open.set()
        self._permits.release(1000)

    def __call__(self, key, tasks, on_step):
        self.calls.append([task.prompt for task in tasks])
        if self._fault is not None:
            self._fault(tasks)
        stopped = False
        for step in range(1, key.steps + 1):
            if on_step(step, key.steps):
                stopped = True
                break
        if not self._open.is_set():
            self.holding.set()
            if not self._permits.acquire(timeout=HANG_S):
                raise TimeoutError("the test never let the call through")
            self.holding.clear()
        images = [task.prompt for task in tasks]
        if stopped:
            raise GenerationInterrupted(images)
        return images


async def _until(condition, what: str) -> None:
    for _ in range(HANG_S * 100):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_an_interrupt_after_the_last_step_still_stops_the_job_but_not_the_queue():
    # A request of 4 images runs as two batches of 2. The interrupt comes while the
    # first call is past its last step (decoding): that call ends normally, but the
    # request must still stop there (A1111: interrupt stops the current job), while the
    # request queued behind it, not running when the interrupt came, runs untouched.
    async def scenario():
        runner = ScriptedRunner()
        batcher = Batcher(runner, max_batch_size=2, window_seconds=0, queue_size=4)
        batcher.start()
        big = asyncio.ensure_future(batcher.submit(KEY, _tasks("a", "b", "c", "d")))
        await _until(runner.holding.is_set, "the first call to finish its steps")
        queued = asyncio.ensure_future(batcher.submit(OTHER_KEY, _tasks("queued")))
        await _until(lambda: batcher.waiting == 2, "the second request to be queued")
        batcher.interrupt()
        runner.open()
        big_result = await asyncio.wait_for(big, HANG_S)
        queued_result = await asyncio.wait_for(queued, HANG_S)
        depth = batcher.depth
        await batcher.close()
        return runner.calls, big_result, queued_result, depth

    calls, big, queued, depth = asyncio.run(scenario())
    assert big.interrupted and big.images == ["a", "b"], "the interrupted request keeps what was made"
    assert not queued.interrupted and queued.images == ["queued"]
    assert calls == [["a", "b"], ["queued"]], "the interrupted request got no further batch"
    assert depth == 0


def _out_of_memory_above_one(tasks):
    if len(tasks) > 1:
        raise MemoryError("CUDA out of memory")


def test_an_out_of_memory_retry_leaves_out_a_request_cancelled_meanwhile():
    # [a, c] runs out of memory and is retried as [a] then [c]. The client of c goes
    # away while [a] runs: c's retry must not run (its work is cancelled), a is served,
    # and the queue slot of c is freed exactly once.
    async def scenario():
        runner = ScriptedRunner(fault=_out_of_memory_above_one)
        observer = Observer()
        batcher = Batcher(runner, max_batch_size=4, window_seconds=0, queue_size=4, observer=observer)
        batcher.start()
        blocker = asyncio.ensure_future(batcher.submit(KEY, _tasks("blocker")))
        await _until(runner.holding.is_set, "the blocker to be in its call")
        kept = asyncio.ensure_future(batcher.submit(KEY, _tasks("a")))
        leaver = asyncio.ensure_future(batcher.submit(KEY, _tasks("c")))
        await _until(lambda: batcher.waiting == 2, "two queued requests")
        # The blocker goes through; then [a, c] fails before its steps, and the first
        # half of the retry, [a], is held.
        runner.let_one_through()
        await _until(lambda: runner.calls[-1:] == [["a"]] and runner.holding.is_set(), "the retry of a")
        leaver.cancel()
        await _until(lambda: batcher.depth == 1, "the leaver's slot to be freed")
        runner.open()
        result = await asyncio.wait_for(kept, HANG_S)
        assert (await blocker).images == ["blocker"]
        depth = batcher.depth
        await batcher.close()
        return runner.calls, result, depth, observer

    calls, result, depth, observer = asyncio.run(scenario())
    assert result.images == ["a"] and not result.interrupted
    assert calls == [["blocker"], ["a", "c"], ["a"]], "the cancelled request's retry never ran"
    assert depth == 0 and min(observer.depths) >= 0, "the gauge never went negative"
    assert observer.images == 2, "images counted are the ones made: blocker and a"


def _serve_after(failing_runner) -> tuple[str, object, bool, int]:
    """Submits "fails" (to a runner that misbehaves on it), then "next": how each ended."""

    def runner(key, tasks, on_step):
        if tasks[0].prompt == "fails":
            return failing_runner(key, tasks, on_step)
        return [task.prompt for task in tasks]

    async def scenario():
        batcher = Batcher(runner, max_batch_size=4, window_seconds=0, queue_size=4)
        batcher.start()
        try:
            await asyncio.wait_for(batcher.submit(KEY, _tasks("fails", "fails too")), HANG_S)
            failure = "none"
        except GenerationFailed as error:
            failure = f"{error.kind} {error}"
        result = await asyncio.wait_for(batcher.submit(KEY, _tasks("next")), HANG_S)
        alive, depth = batcher.alive, batcher.depth
        await batcher.close()
        return failure, result, alive, depth

    return asyncio.run(scenario())


def test_a_cancelled_error_raised_inside_the_pipeline_call_fails_only_its_batch():
    # asyncio.CancelledError is a BaseException: raised on the pipeline's thread, it came
    # out of the worker's await as if the worker were being stopped, and the worker died
    # with the request admitted (it waited forever, and so would a SIGTERM drain).
    def runner(key, tasks, on_step):
        raise asyncio.CancelledError()

    failure, result, alive, depth = _serve_after(runner)
    assert failure == "GenerationError generation failed: CancelledError"
    assert result.images == ["next"] and alive and depth == 0


def test_a_runner_that_returns_too_few_images_fails_the_request_instead_of_hanging_it():
    def runner(key, tasks, on_step):
        return [task.prompt for task in tasks][:-1]

    failure, result, alive, depth = _serve_after(runner)
    assert failure.startswith("GenerationError generation failed: images missing")
    assert result.images == ["next"] and alive and depth == 0


class HeldAfterFirstStep:
    """A pipeline stand-in whose first call stops after step 1 until released; it asks
    `on_step` at every step, as diffusers does, and stops when told to."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.in_step = threading.Event()
        self.release = threading.Event()

    def __call__(self, key, tasks, on_step):
        self.calls.append([task.prompt for task in tasks])
        images = [task.prompt for task in tasks]
        for step in range(1, key.steps + 1):
            stop = on_step(step, key.steps)
            if len(self.calls) == 1 and step == 1:
                self.in_step.set()
                if not self.release.wait(HANG_S):
                    raise TimeoutError("the test never released the call")
                stop = on_step(step, key.steps)
            if stop:
                raise GenerationInterrupted(images)
        return images


def _stop_first_call_of_a_split_request(stop: str):
    # One request of 4 images runs as two calls of 2; `stop` ("skip" or "interrupt")
    # comes during the first call's denoising.
    async def scenario():
        runner = HeldAfterFirstStep()
        observer = Observer()
        batcher = Batcher(runner, max_batch_size=2, window_seconds=0, queue_size=4, observer=observer)
        batcher.start()
        request = asyncio.ensure_future(batcher.submit(KEY, _tasks("a", "b", "c", "d")))
        await _until(runner.in_step.is_set, "the first call to be in its first step")
        getattr(batcher, stop)()
        runner.release.set()
        result = await asyncio.wait_for(request, HANG_S)
        depth = batcher.depth
        await batcher.close()
        return runner.calls, result, depth, observer.images

    return asyncio.run(scenario())


def test_skip_stops_the_running_call_and_the_request_goes_on_with_its_next_batch():
    calls, result, depth, images_made = _stop_first_call_of_a_split_request("skip")
    assert calls == [["a", "b"], ["c", "d"]]
    assert not result.interrupted and result.images == ["a", "b", "c", "d"]
    assert depth == 0 and images_made == 4


def test_interrupt_at_the_same_point_ends_the_request():
    calls, result, depth, images_made = _stop_first_call_of_a_split_request("interrupt")
    assert calls == [["a", "b"]]
    assert result.interrupted and result.images == ["a", "b"]
    assert depth == 0 and images_made == 2
