"""Admission: a request takes a queue slot before any heavy work is done for it.

The queue bound (`--queue-size`) used to be checked by the batcher only when a request
was submitted, after its images were decoded and its checkpoint loaded on the event
loop; a client could make the replica do that work and still get a 429. Now a request
that passed the cheap checks takes a slot here first (a 429 when none is free, a 503
while draining), keeps it while its images are decoded and its checkpoint loaded on
worker threads, and while it waits and runs in the batcher. Every job in the batcher
holds a slot, so the batcher's own bound is never the one that refuses.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

from ..errors import QueueFull, ShuttingDown


class Admission:
    def __init__(
        self,
        capacity: int,
        *,
        retry_after: Callable[[], int],
        on_reject: Callable[[], None],
        on_change: Callable[[], None] = lambda: None,
    ):
        self.capacity = capacity
        self._retry_after = retry_after
        self._on_reject = on_reject
        self._on_change = on_change  # `held` changed
        self.held = 0
        self._accepting = True
        self._empty = asyncio.Event()
        self._empty.set()

    def stop_accepting(self) -> None:
        """Draining: new requests get ShuttingDown; admitted ones run to the end."""
        self._accepting = False

    async def empty(self) -> None:
        """Returns once no admitted request is left (at once when none is)."""
        await self._empty.wait()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if not self._accepting:
            raise ShuttingDown("the server is shutting down")
        if self.held >= self.capacity:
            self._on_reject()
            raise QueueFull(self._retry_after())
        self.held += 1
        self._empty.clear()
        self._on_change()
        try:
            yield
        finally:
            self.held -= 1
            if self.held == 0:
                self._empty.set()
            self._on_change()
