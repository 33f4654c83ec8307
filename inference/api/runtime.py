"""The running service's state: settings, the loaded model, the batcher, metrics.

Owned by one FastAPI app (on `app.state.runtime`), so several apps can live in one
process (tests) without sharing anything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from fastapi import HTTPException

from ..config import ServerSettings
from ..engine.generate import run_batch
from ..engine.loading import LoadedModel, choose_device, load_model
from ..metrics import Metrics
from ..serving.batcher import Batcher, BatchRunner
from ..serving.process_clock import process_started_monotonic

log = logging.getLogger(__name__)

# The process's real spawn time (from /proc), so the logged cold start includes the
# interpreter's boot and every import, not just what ran after this module loaded.
PROCESS_STARTED = process_started_monotonic()


class Runtime:
    def __init__(
        self,
        settings: ServerSettings,
        *,
        wrap_runner: Callable[[BatchRunner], BatchRunner] | None = None,
    ):
        self.settings = settings
        self.metrics = Metrics()
        self.model: LoadedModel | None = None
        self.load_error: str | None = None
        self.draining = False
        self.on_fatal: Callable[[], None] = lambda: None
        runner: BatchRunner = self._run_batch
        if wrap_runner is not None:
            runner = wrap_runner(runner)
        self._runner = runner
        self.batcher: Batcher | None = None
        self._loading: asyncio.Task | None = None

    def _run_batch(self, key, tasks, on_step):
        return run_batch(self.require_model(), key, tasks, on_step)

    async def start(self) -> None:
        self.batcher = Batcher(
            self._runner,
            max_batch_size=self.settings.max_batch_size,
            window_seconds=self.settings.batch_window_ms / 1000,
            queue_size=self.settings.queue_size,
            observer=self.metrics,
        )
        self.batcher.start()
        self._loading = asyncio.create_task(self._load(), name="model-load")

    async def _load(self) -> None:
        s = self.settings
        load_started = time.monotonic()
        try:
            device = choose_device(s.device, s.dtype)
            self.model = await asyncio.to_thread(
                load_model, s.model, cache_dir=s.cache_dir, revision=s.revision, device=device
            )
        except Exception as error:  # reported by /readyz and the log; the process then exits
            self.load_error = f"{type(error).__name__}: {error}"
            log.error("could not load model %s: %s", s.model, self.load_error)
            self.on_fatal()
            return
        self.metrics.model_load_seconds.labels(model=self.model.name).set(self.model.load_seconds)
        startup = time.monotonic() - PROCESS_STARTED
        self.metrics.startup_seconds.set(startup)
        if not self.draining:
            self.metrics.ready.set(1)
        log.info(
            "ready in %.2fs after process start (model %s; loading, imports of torch/diffusers included, took %.2fs)",
            startup,
            self.model.name,
            time.monotonic() - load_started,
        )

    async def wait_loaded(self) -> None:
        if self._loading is not None:
            await self._loading

    async def stop(self) -> None:
        self.begin_drain()
        if self.batcher is not None:
            await self.batcher.drain()
            await self.batcher.close()
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()

    async def drained(self) -> None:
        """Returns once every admitted job has finished (at once when nothing is queued)."""
        if self.batcher is not None:
            await self.batcher.drain()

    def begin_drain(self) -> None:
        """SIGTERM: readiness goes false and no new work is admitted; admitted work runs on."""
        self.draining = True
        self.metrics.ready.set(0)
        if self.batcher is not None:
            self.batcher.stop_accepting()

    def require_model(self) -> LoadedModel:
        if self.model is None:
            raise HTTPException(503, "the model is still loading" if not self.load_error else "the model failed to load")
        return self.model

    def readiness(self) -> tuple[bool, str]:
        if self.load_error:
            return False, "failed"
        if self.draining:
            return False, "draining"
        if self.model is None:
            return False, "loading"
        if self.batcher is None or not self.batcher.alive:
            return False, "worker stopped"
        return True, "ready"
