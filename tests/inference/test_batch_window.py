"""The batch window, on the Batcher alone (no model, no HTTP): a request that finds the
server idle runs at once; in a busy period the head of the queue waits for company.

The window is 10 minutes here, so "runs at once" would show as a hang (caught by
wait_for), never as a timing comparison."""

from __future__ import annotations

import asyncio
import threading

from inference.engine.generate import BatchKey, ImageTask
from inference.engine.samplers import resolve
from inference.serving.batcher import Batcher

KEY = BatchKey(model="m", kind="txt2img", width=64, height=64, steps=2, sampler=resolve(None, None), cfg_scale=7.0)
LONG_WINDOW_S = 600
HANG_S = 60


class Recorder:
    def __init__(self):
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, key, tasks, on_step):
        self.calls.append([t.prompt for t in tasks])
        self.gate.wait(HANG_S)
        return [t.prompt for t in tasks]  # stands in for images


def _task(prompt: str) -> list[ImageTask]:
    return [ImageTask(prompt=prompt, negative_prompt="", seed=0)]


async def _started(recorder: Recorder, count: int) -> None:
    while len(recorder.calls) < count:
        await asyncio.sleep(0.01)


def test_a_request_on_an_idle_server_does_not_wait_for_the_window():
    async def scenario():
        recorder = Recorder()
        batcher = Batcher(recorder, max_batch_size=4, window_seconds=LONG_WINDOW_S, queue_size=8)
        batcher.start()
        result = await asyncio.wait_for(batcher.submit(KEY, _task("alone")), HANG_S)
        await batcher.close()
        return recorder.calls, result.images

    calls, images = asyncio.run(scenario())
    assert calls == [["alone"]] and images == ["alone"]


def test_in_a_busy_period_the_queue_head_waits_for_company():
    async def scenario():
        recorder = Recorder()
        batcher = Batcher(recorder, max_batch_size=2, window_seconds=LONG_WINDOW_S, queue_size=8)
        batcher.start()
        recorder.gate.clear()
        first = asyncio.ensure_future(batcher.submit(KEY, _task("first")))
        await asyncio.wait_for(_started(recorder, 1), HANG_S)
        second = asyncio.ensure_future(batcher.submit(KEY, _task("second")))
        await asyncio.sleep(0)
        recorder.gate.set()
        await asyncio.wait_for(first, HANG_S)
        # The batch just ended, so "second" waits for company instead of running alone.
        third = asyncio.ensure_future(batcher.submit(KEY, _task("third")))
        await asyncio.wait_for(asyncio.gather(second, third), HANG_S)
        await batcher.close()
        return recorder.calls

    assert asyncio.run(scenario()) == [["first"], ["second", "third"]]
