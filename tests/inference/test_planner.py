"""The batch planner and the out-of-memory halving, called directly: no threads, no event
loop, no clock (time is a number each call is given)."""

from __future__ import annotations

import pytest

from inference.engine.generate import BatchKey, GenerationInterrupted, ImageTask
from inference.engine.oom import run_halving_on_oom
from inference.engine.samplers import resolve
from inference.errors import GenerationFailed, OutOfMemory, QueueFull
from inference.serving.planner import BatchPlanner, JobResult

KEY = BatchKey(model="m", kind="txt2img", width=64, height=64, steps=3, sampler=resolve(None, None), cfg_scale=7.0)
OTHER = BatchKey(model="m", kind="txt2img", width=72, height=64, steps=3, sampler=resolve(None, None), cfg_scale=7.0)


def _tasks(*prompts: str) -> list[ImageTask]:
    return [ImageTask(prompt=prompt, negative_prompt="", seed=0) for prompt in prompts]


def _planner(**overrides) -> BatchPlanner:
    return BatchPlanner(**{"max_batch_size": 4, "window_seconds": 0.0, "queue_size": 8, **overrides})


def _prompts(batch) -> list[str]:
    return [task.prompt for task in batch.tasks]


def _run(planner: BatchPlanner, now: float = 0.0):
    """Takes the next batch and finishes it as if each image were its prompt."""
    batch = planner.take_batch()
    return batch, planner.finish(batch, _prompts(batch), now=now)


# -- admission and Retry-After ------------------------------------------------------


def test_admission_stops_at_the_queue_size_with_a_retry_after_from_the_queued_images():
    planner = _planner(max_batch_size=2, queue_size=2)
    planner.admit(KEY, _tasks("a", "b", "c"))
    planner.admit(KEY, _tasks("d"))
    with pytest.raises(QueueFull) as refused:
        planner.admit(KEY, _tasks("e"))
    # 4 images queued at 1 s per image (the first estimate), 2 per call: 2 s.
    assert refused.value.retry_after == 2
    assert planner.depth == 2 and planner.waiting == 2


def test_retry_after_follows_the_measured_speed_and_stays_between_1_and_60():
    planner = _planner(max_batch_size=1, queue_size=1)
    planner.admit(KEY, _tasks(*"abcdefghij"))
    for _ in range(30):
        planner.record_speed(seconds=100.0, images=1)  # the estimate converges on 100 s per image
    assert planner.retry_after() == 60
    fast = _planner(queue_size=1)
    fast.admit(KEY, _tasks("a"))
    fast.record_speed(seconds=0.0, images=1)
    assert fast.retry_after() == 1


def test_a_cancelled_waiting_job_frees_its_slot_and_is_never_batched():
    planner = _planner(queue_size=2)
    gone = planner.admit(KEY, _tasks("gone"))
    planner.admit(KEY, _tasks("stays"))
    assert planner.cancel(gone) is False, "nothing runs, so there is nothing to stop"
    assert planner.depth == 1
    planner.admit(KEY, _tasks("late"))  # the freed slot is usable at once
    batch, done = _run(planner)
    assert _prompts(batch) == ["stays", "late"]
    assert [result.images for _, result in done] == [["stays"], ["late"]]
    assert planner.cancel(gone) is False and planner.depth == 0, "a second cancel frees nothing"


# -- grouping and splitting ---------------------------------------------------------


def test_jobs_with_the_head_key_run_together_and_other_keys_wait_their_turn():
    planner = _planner()
    planner.admit(KEY, _tasks("a"))
    planner.admit(OTHER, _tasks("other"))
    planner.admit(KEY, _tasks("b", "c"))
    first, done = _run(planner)
    assert first.key == KEY and _prompts(first) == ["a", "b", "c"]
    assert [result.images for _, result in done] == [["a"], ["b", "c"]]
    second, _ = _run(planner)
    assert second.key == OTHER and _prompts(second) == ["other"]
    assert planner.depth == 0


def test_a_job_larger_than_the_batch_size_is_split_and_answered_after_its_last_part():
    planner = _planner(max_batch_size=2)
    job = planner.admit(KEY, _tasks("a", "b", "c", "d", "e"))
    parts = []
    for _ in range(3):
        batch, done = _run(planner)
        parts.append(_prompts(batch))
        if len(parts) < 3:
            assert done == [] and planner.depth == 1
    assert parts == [["a", "b"], ["c", "d"], ["e"]]
    assert done == [(job, JobResult(["a", "b", "c", "d", "e"]))]


def test_a_full_batch_fills_from_the_oldest_job_and_the_rest_goes_next():
    planner = _planner(max_batch_size=3)
    planner.admit(KEY, _tasks("a", "b"))
    planner.admit(KEY, _tasks("c", "d"))
    first, done = _run(planner)
    assert _prompts(first) == ["a", "b", "c"] and len(done) == 1
    second, done = _run(planner)
    assert _prompts(second) == ["d"] and done[0][1].images == ["c", "d"]


# -- the batch window ---------------------------------------------------------------


def test_a_request_on_an_idle_server_runs_at_once_whatever_the_window():
    planner = _planner(window_seconds=600)
    assert planner.seconds_until_next_batch(now=1000.0) is None
    planner.admit(KEY, _tasks("alone"))
    assert planner.seconds_until_next_batch(now=1000.0) == 0.0


def test_in_a_busy_period_the_head_waits_for_company_until_the_window_ends_or_the_batch_is_full():
    planner = _planner(max_batch_size=2, window_seconds=1.0)
    planner.admit(KEY, _tasks("first"))
    _run(planner, now=10.0)  # a batch ended at t=10: a busy period
    planner.admit(KEY, _tasks("second"))
    assert planner.seconds_until_next_batch(now=10.25) == pytest.approx(1.0)
    assert planner.seconds_until_next_batch(now=10.75) == pytest.approx(0.5), "the deadline is kept"
    planner.admit(OTHER, _tasks("other"))
    assert planner.seconds_until_next_batch(now=11.0) == pytest.approx(0.25), "other keys are no company"
    assert planner.seconds_until_next_batch(now=11.5) == 0.0, "the window is over"
    planner.take_batch()


def test_a_full_batch_does_not_wait_for_the_window():
    planner = _planner(max_batch_size=2, window_seconds=1.0)
    planner.admit(KEY, _tasks("first"))
    _run(planner, now=10.0)
    planner.admit(KEY, _tasks("second"))
    assert planner.seconds_until_next_batch(now=10.1) > 0
    planner.admit(KEY, _tasks("third"))
    assert planner.seconds_until_next_batch(now=10.2) == 0.0
    assert _prompts(planner.take_batch()) == ["second", "third"]


def test_the_window_closes_when_everything_waiting_is_cancelled():
    planner = _planner(window_seconds=1.0)
    planner.admit(KEY, _tasks("first"))
    _run(planner, now=10.0)
    gone = planner.admit(KEY, _tasks("gone"))
    assert planner.seconds_until_next_batch(now=10.1) > 0
    planner.cancel(gone)
    assert planner.seconds_until_next_batch(now=10.2) is None
    planner.admit(KEY, _tasks("later"))
    assert planner.seconds_until_next_batch(now=50.0) == 0.0, "idle again: runs at once"


# -- results: failure, interrupt, cancellation, missing images -----------------------


def test_a_failure_answers_every_job_of_its_batch_and_no_other():
    planner = _planner(max_batch_size=2)
    a = planner.admit(KEY, _tasks("a"))
    b = planner.admit(KEY, _tasks("b", "b2"))
    planner.admit(KEY, _tasks("later"))
    batch = planner.take_batch()
    failure = GenerationFailed("generation failed: RuntimeError")
    done = planner.finish(batch, None, now=0.0, failure=failure)
    assert done == [(a, failure), (b, failure)], "b fails whole, though b2 was never scheduled"
    assert planner.depth == 1 and _prompts(planner.take_batch()) == ["later"]


def test_an_interrupt_ends_the_running_jobs_with_what_they_have_and_they_get_no_further_batch():
    planner = _planner(max_batch_size=2)
    job = planner.admit(KEY, _tasks("a", "b", "c", "d"))
    planner.admit(OTHER, _tasks("queued"))
    batch = planner.take_batch()
    assert planner.interrupt_running() is True
    # The call was past its last step, so it returned normally: the job still stops.
    done = planner.finish(batch, ["a", "b"], now=0.0)
    assert done == [(job, JobResult(["a", "b"], interrupted=True))]
    assert _prompts(planner.take_batch()) == ["queued"], "queued work is not touched"


def test_interrupt_with_nothing_running_does_nothing():
    planner = _planner()
    job = planner.admit(KEY, _tasks("a"))
    assert planner.interrupt_running() is False
    _, done = _run(planner)
    assert done == [(job, JobResult(["a"]))]


def test_a_call_stopped_by_interrupt_answers_with_the_partial_images():
    planner = _planner()
    job = planner.admit(KEY, _tasks("a", "b"))
    batch = planner.take_batch()
    assert planner.finish(batch, ["a", "b"], now=0.0, interrupted=True) == [(job, JobResult(["a", "b"], interrupted=True))]


def test_cancelling_every_running_job_says_stop_the_call_and_its_images_go_nowhere():
    planner = _planner()
    a = planner.admit(KEY, _tasks("a"))
    b = planner.admit(KEY, _tasks("b"))
    batch = planner.take_batch()
    assert planner.cancel(a) is False, "b still waits for this call"
    assert planner.cancel(b) is True
    assert planner.depth == 0
    assert planner.finish(batch, ["a", "b"], now=0.0) == [] and planner.running == 0


def test_images_left_out_of_an_out_of_memory_retry_are_not_counted_as_made():
    planner = _planner()
    kept = planner.admit(KEY, _tasks("a"))
    gone = planner.admit(KEY, _tasks("c"))
    batch = planner.take_batch()
    planner.cancel(gone)
    assert planner.finish(batch, ["a", None], now=0.0) == [(kept, JobResult(["a"]))]


def test_a_runner_that_returns_too_few_images_fails_the_job_instead_of_leaving_it_waiting():
    planner = _planner()
    job = planner.admit(KEY, _tasks("a", "b"))
    batch = planner.take_batch()
    [(answered, failure)] = planner.finish(batch, ["a"], now=0.0)
    assert answered is job and isinstance(failure, GenerationFailed) and "images missing" in str(failure)
    assert planner.depth == 0


def test_fail_running_answers_the_running_jobs_only():
    planner = _planner(max_batch_size=1)
    running = planner.admit(KEY, _tasks("a"))
    planner.admit(KEY, _tasks("b"))
    planner.take_batch()
    failure = GenerationFailed("internal error while batching")
    assert planner.fail_running(failure) == [(running, failure)]
    assert planner.depth == 1 and planner.waiting == 1


# -- out-of-memory halving (engine/oom.py) ------------------------------------------


class OomAbove:
    """A runner that runs out of memory above `limit` images; images are the prompts."""

    def __init__(self, limit: int, error: BaseException | None = None):
        self.limit = limit
        self.error = error or MemoryError("CUDA out of memory")
        self.calls: list[list[str]] = []

    def __call__(self, key, tasks, on_step):
        self.calls.append([task.prompt for task in tasks])
        if len(tasks) > self.limit:
            raise self.error
        return [task.prompt for task in tasks]


def _no_step(step, total):
    return False


def test_out_of_memory_halves_the_batch_until_it_fits_and_keeps_the_order():
    runner = OomAbove(1)
    images = run_halving_on_oom(runner, KEY, _tasks("a", "b", "c", "d"), _no_step)
    assert images == ["a", "b", "c", "d"]
    assert runner.calls == [["a", "b", "c", "d"], ["a", "b"], ["a"], ["b"], ["c", "d"], ["c"], ["d"]]


def test_a_retry_leaves_out_the_tasks_no_longer_wanted():
    runner = OomAbove(1)
    images = run_halving_on_oom(runner, KEY, _tasks("a", "b", "c", "d"), _no_step, wanted=lambda i: i != 2)
    assert images == ["a", "b", None, "d"]
    assert ["c"] not in runner.calls


def test_out_of_memory_at_one_image_is_the_domain_out_of_memory():
    with pytest.raises(OutOfMemory, match="smaller size"):
        run_halving_on_oom(OomAbove(0), KEY, _tasks("a", "b"), _no_step)


def test_other_errors_are_not_retried():
    runner = OomAbove(0, error=RuntimeError("injected fault"))
    with pytest.raises(RuntimeError, match="injected fault"):
        run_halving_on_oom(runner, KEY, _tasks("a", "b"), _no_step)
    assert runner.calls == [["a", "b"]]


def test_an_interrupt_during_a_retry_keeps_the_finished_half():
    def runner(key, tasks, on_step):
        if len(tasks) > 1:
            raise MemoryError("out of memory")
        if tasks[0].prompt == "b":
            raise GenerationInterrupted(["b (partial)"])
        return [tasks[0].prompt]

    with pytest.raises(GenerationInterrupted) as stop:
        run_halving_on_oom(runner, KEY, _tasks("a", "b"), _no_step)
    assert stop.value.images == ["a", "b (partial)"]
