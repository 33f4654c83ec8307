"""The one thread every pipeline call runs on (see `PipelineThread`)."""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any


class PipelineThread:
    """One long-lived daemon thread that runs the pipeline calls, one at a time (the worker
    awaits each call before it plans the next, a stuck one included).

    Not `asyncio.to_thread`: the default executor's threads are joined when the event loop
    and the interpreter shut down, so a call stuck for good would keep the process from
    ever exiting after SIGTERM. And one thread for every call, not a new one per call:
    torch's CPU thread pools belong to the thread that calls into them.
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, function, *args) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="pipeline-call", daemon=True)
            self._thread.start()
        self._calls.put((future, function, args))
        return future

    def _serve(self) -> None:
        while True:
            future, function, args = self._calls.get()
            outcome: tuple[Any, BaseException | None]
            try:
                outcome = (function(*args), None)
            except BaseException as error:  # handed to the loop: the batch fails, not the thread
                outcome = (None, error)
            try:
                future.get_loop().call_soon_threadsafe(_settle, future, *outcome)
            except RuntimeError:  # the loop has closed (shutdown): nobody waits for this any more
                pass


def _settle(future: asyncio.Future, result, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
