"""The running service's state: settings, the loaded models, the batcher, metrics.

One per app (see `api/app.py`), so several apps can live in one process (tests) without
sharing anything.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Awaitable, Callable

from ..config import ServerSettings
from ..engine.compile_cache import CompileCache, activate_compile_cache, cache_key, platform_fingerprint
from ..engine.extras import run_extras
from ..engine.fast_path import FastPathConfig, choose_fast_path
from ..engine.generate import BatchKey, ImageTask, run_batch
from ..engine.loading import LoadedModel, choose_device, import_libraries
from ..engine.lora import LoraSpec
from ..engine.oom import BatchRunner
from ..engine.padded import run_bucketed
from ..engine.precompiled import PrecompiledStore
from ..engine.registry import ModelRef, ModelRegistry, model_refs
from ..engine.upscalers import Upscalers, UpscalerSpec
from ..engine.warmup import WarmupProgress, warm_up, warmup_plan, warmup_sizes
from ..errors import ClientDisconnected, GenerationFailed, NotReady
from ..metrics import Metrics
from ..serving.batcher import Batcher, JobResult
from ..serving.process_clock import process_started_monotonic
from .admission import Admission
from .peers import SwitchStamp

log = logging.getLogger(__name__)

DISCONNECT_POLL_SECONDS = 0.2
# Answers whether the client has gone away (the transport's own check, e.g. Starlette's
# `Request.is_disconnected`).
DisconnectCheck = Callable[[], Awaitable[bool]]

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
        self.registry: ModelRegistry | None = None
        # The checkpoint requests use unless they name one (A1111's sd_model_checkpoint).
        self.current_model: str = ModelRef.parse(settings.default_model).name
        self.load_error: str | None = None
        self.draining = False
        self.on_fatal: Callable[[], None] = lambda: None
        runner: BatchRunner = self._run_batch
        if wrap_runner is not None:
            runner = wrap_runner(runner)
        self._runner = runner
        self.batcher: Batcher | None = None
        # Learned upscalers load on first use, on the worker (they share its device).
        self.upscalers = Upscalers(
            [UpscalerSpec.parse(text) for text in settings.upscaler], cache_dir=settings.cache_dir
        )
        # Generation requests hold a slot of this from before their heavy work until answered.
        self.admission = Admission(
            settings.queue_size,
            retry_after=lambda: self.batcher.retry_after() if self.batcher is not None else 1,
            on_reject=self.metrics.request_rejected,
            on_change=self._publish_queue_depth,
        )
        self._loading: asyncio.Task | None = None
        self.warmup = WarmupProgress()
        self.compile_cache: CompileCache | None = None
        self.precompiled_store: PrecompiledStore | None = None
        # Awaited once the default checkpoint is loaded and warmed, before ready (with
        # peers: adopting the checkpoint the other replicas use, replica_checkpoint.py).
        # It never fails the start: an error is logged and the replica serves as it is.
        self.before_ready: Callable[[], Awaitable[None]] | None = None
        self.syncing = False
        # Switches of the current checkpoint (POST options, adopting the peers' one) run
        # one at a time, in the order they arrive: the last one asked for stays current.
        # With peers each switch carries a stamp (service/replica_checkpoint.py), and one
        # older than the switch applied before it is not applied: the last stamped stays
        # current, on every replica.
        self._switching = asyncio.Lock()
        # The stamp of the switch that made `current_model` current (None: none had one).
        self.switch_stamp: SwitchStamp | None = None
        # A checkpoint being loaded and warmed, by name: everyone who needs it awaits the one task.
        self._preparing: dict[str, asyncio.Task[LoadedModel]] = {}

    def _loaded(self, model: LoadedModel) -> None:
        self.metrics.model_load_seconds.labels(model=model.name).set(model.load_seconds)
        counter = self.metrics.uncompiled_calls
        model.compiled_shapes.on_eager = lambda module: counter.labels(module=module).inc()

    def _publish_queue_depth(self) -> None:
        # Every job in the batcher holds an admission slot, so this counts them and the
        # requests still decoding their images: sd_queue_depth (KEDA scales on it) is
        # every request admitted and not answered.
        self.metrics.queue_depth.set(self.admission.held)

    def _run_batch(self, key, tasks, on_step):
        # On the batcher's one pipeline thread, which warm-up uses too: CUDA graph trees
        # (compiled `reduce-overhead`) are per thread, and a call on another thread would
        # record its graphs again.
        if key.kind == "upscale":  # extras: no checkpoint involved
            return run_extras(self.upscalers, key, tasks, on_step)
        # A checkpoint evicted since the request was prepared is loaded again here.
        run = functools.partial(run_batch, upscalers=self.upscalers)
        return run_bucketed(self.registry.get(key.model), key, tasks, on_step, run=run)

    async def submit_watching_disconnect(
        self, key: BatchKey, tasks: list[ImageTask], is_disconnected: DisconnectCheck
    ) -> JobResult:
        """Submit to the batcher; if the client goes away first, cancel its work."""
        job = asyncio.ensure_future(self.require_batcher().submit(key, tasks))
        while True:
            done, _ = await asyncio.wait({job}, timeout=DISCONNECT_POLL_SECONDS)
            if done:
                return job.result()
            if await is_disconnected():
                job.cancel()
                try:
                    await job
                except asyncio.CancelledError:
                    pass
                raise ClientDisconnected("the client closed the request")

    async def start(self) -> None:
        self.batcher = Batcher(
            self._runner,
            max_batch_size=self.settings.max_batch_size,
            window_seconds=self.settings.batch_window_ms / 1000,
            queue_size=self.settings.queue_size,
            observer=_QueueDepthFromAdmission(self),
            stall_seconds=self.settings.stall_seconds,
        )
        self.batcher.start()
        self._loading = asyncio.create_task(self._load(), name="model-load")

    async def _load(self) -> None:
        s = self.settings
        load_started = time.monotonic()
        try:
            # In a thread, so /healthz answers meanwhile; timed on its own because the
            # performance target counts the cold start beyond these imports.
            import_seconds = await asyncio.to_thread(import_libraries)
            self.metrics.startup_import_seconds.set(import_seconds)
            device = choose_device(s.device, s.dtype)
            fast_path = choose_fast_path(
                s.compile, device.device, max_batch_size=s.max_batch_size,
                precompile=s.precompile == "auto",
            )
            self.registry = ModelRegistry(
                self.checkpoints(),
                cache_dir=s.cache_dir,
                device=device,
                loras=self.lora_specs(),
                max_loaded=s.max_loaded_models,
                on_load=self._loaded,
                fast_path=fast_path,
            )
            self.upscalers.device = device
            model = await asyncio.to_thread(self.registry.get, self.current_model)
        except Exception as error:  # reported by /readyz and the log; the process then exits
            self.load_error = f"{type(error).__name__}: {error}"
            log.error("could not load model %s: %s", self.current_model, self.load_error)
            self.on_fatal()
            return
        try:
            plan = self._warmup_calls(model)
            # Not ready from here until warmed (nothing may be awaited before this).
            self.warmup.total, self.warmup.done, self.warmup.active = len(plan), 0, bool(plan)
            await self._warm_up(model, plan, self.warmup)
            model.warmed = True
        except Exception as error:  # a shape that does not compile would fail every request
            self.warmup.active = False
            self.load_error = f"warm-up failed: {type(error).__name__}: {error} (--compile off serves eager)"
            log.error("%s", self.load_error, exc_info=error)
            self.on_fatal()
            return
        await self._before_ready()
        startup = time.monotonic() - PROCESS_STARTED
        self.metrics.startup_seconds.set(startup)
        if not self.draining:
            self.metrics.ready.set(1)
        log.info(
            "ready in %.2fs after process start (checkpoint %s; importing torch/transformers/diffusers took %.2fs,"
            " %.2fs beyond them; loading, the imports included, took %.2fs)",
            startup,
            self.current_model,
            import_seconds,
            startup - import_seconds,
            time.monotonic() - load_started,
        )

    async def _before_ready(self) -> None:
        if self.before_ready is None:
            return
        self.syncing = True  # not ready, and requests get 503, until it is done
        try:
            await self.before_ready()
        except Exception as error:
            log.warning("serving %s: before ready, %s: %s", self.current_model, type(error).__name__, error)
        finally:
            self.syncing = False

    def _warmup_calls(self, model: LoadedModel):
        config = model.fast_path or FastPathConfig()
        sizes = warmup_sizes(self.settings.warmup_sizes, model.native_size, compiled=config.compiles)
        buckets = config.buckets if config.pad_batches else tuple(range(1, self.settings.max_batch_size + 1))
        return warmup_plan(sizes, buckets)

    def _use_compile_cache(self, model: LoadedModel, plan) -> None:
        """Inductor's caches on the model cache volume, keyed by what they depend on.

        Once per process, for the first checkpoint that compiles (the default): inductor
        reads its cache directory from the process's environment at every compile, and
        the compiles of two checkpoints interleave (a switch warms while the current one
        serves), so a second directory could not be kept to one checkpoint. Every later
        checkpoint's entries go in the same directory; they are content-hashed, so never
        wrong, and a replica of the same deployment that switches later finds them."""
        if self.compile_cache is not None:
            log.info("compile cache: %s's compiled code goes in %s too", model.name, self.compile_cache.directory)
            self._use_precompiled(model)
            return
        ref = next(ref for ref in self.checkpoints() if ref.name == model.name)
        config = model.fast_path or FastPathConfig()
        key = cache_key(
            platform_fingerprint(model.device.device),
            model=ref.name,
            revision=ref.revision,
            shapes=[(call.width, call.height, call.batch, call.cfg_scale) for call in plan],
            settings={**config.settings(), "dtype": model.device.dtype_name},
        )
        self.compile_cache = activate_compile_cache(self.settings.cache_dir, key)
        self._use_precompiled(model)

    def _use_precompiled(self, model: LoadedModel) -> None:
        """The model's warmed shapes are saved to (and at the next start loaded from) the
        compile cache as precompiled forwards (engine/precompiled.py), one store per process."""
        if self.compile_cache is None or not (model.fast_path and model.fast_path.precompile):
            return
        if self.precompiled_store is None:
            self.precompiled_store = PrecompiledStore(self.compile_cache.directory / "precompiled")
        model.compiled_shapes.precompiled_store = self.precompiled_store

    async def _warm_up(self, model: LoadedModel, plan, progress: WarmupProgress) -> None:
        """Runs every warm-up call (engine/warmup.py), counting in `progress`.

        Each call is its own item on the batcher's pipeline thread (CUDA graph trees are
        per thread), so batches already queued run between them: a checkpoint warming up
        for a switch holds the requests on the current one for one call at a time, never
        for the whole plan. Before ready there are no batches, so the calls run back to back."""
        if not plan:
            return
        if model.fast_path is not None and model.fast_path.compiles:
            # Before the first call: that is when compiling happens.
            await asyncio.to_thread(self._use_compile_cache, model, plan)
        log.info("warming up %s: %d shapes (%s)", model.name, len(plan), (model.fast_path or FastPathConfig()).summary())
        batcher = self.require_batcher()  # started before the model loads
        loop = asyncio.get_running_loop()

        def run(key, tasks):  # on a worker thread: warm_up's loop waits here for each call
            call = batcher.run_on_pipeline_thread(self._runner, key, tasks, _never_stop)
            return asyncio.run_coroutine_threadsafe(call, loop).result()

        await asyncio.to_thread(warm_up, run, model.name, plan, progress, model.compiled_shapes)
        log.info("warm-up of %s done in %.1fs", model.name, progress.seconds)
        if model.compiled_shapes.precompiled_store is not None:
            log.info("precompiled forwards: %s", model.compiled_shapes.precompiled_store.summary())


    async def stop(self) -> None:
        self.begin_drain()
        if self.batcher is not None:
            await self.batcher.drain()
            await self.batcher.close()
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()

    async def drained(self) -> None:
        """Returns once every admitted request has been answered (at once when none is)."""
        await self.admission.empty()
        if self.batcher is not None:
            await self.batcher.drain()

    def begin_drain(self) -> None:
        """SIGTERM: readiness goes false and no new work is admitted; admitted work (a
        request still decoding its images included) runs on."""
        self.draining = True
        self.metrics.ready.set(0)
        self.admission.stop_accepting()

    def require_started(self) -> None:
        """NotReady until the default checkpoint has loaded once."""
        if self.load_error:
            raise NotReady("the model failed to load")
        if self.registry is None or not self.registry.loaded_names():
            raise NotReady("the model is still loading")
        if self.warmup.active:
            raise NotReady(f"the model is warming up ({self.warmup.done} of {self.warmup.total} shapes)")
        if self.syncing:
            raise NotReady("the replica is asking the others for the current checkpoint")

    def require_registry(self) -> ModelRegistry:
        """The model registry; NotReady before the model load has begun (start-up)."""
        if self.registry is None:
            raise NotReady("the model is still loading")
        return self.registry

    def require_batcher(self) -> Batcher:
        """The batcher; NotReady before start() made it."""
        if self.batcher is None:
            raise NotReady("the server is still starting")
        return self.batcher

    def checkpoints(self) -> list[ModelRef]:
        """Every checkpoint offered, loaded or not (first: the server's default)."""
        return model_refs(self.settings.model, self.settings.revision)

    def lora_specs(self) -> list[LoraSpec]:
        return [LoraSpec.parse(text) for text in self.settings.lora]

    def checkpoint_named(self, wanted: str | None) -> str:
        """A checkpoint's name by any of its client-facing names (None: the current one),
        without loading it. ModelNotFound names the choices."""
        self.require_started()
        return self.current_model if wanted is None else self.require_registry().resolve(wanted)

    async def load(self, name: str) -> LoadedModel:
        """The checkpoint (by its name), loaded on a worker thread and warmed up if it is
        not both already.

        A checkpoint a request names is warmed too, before that request runs: its load
        already holds the request for seconds, and the shapes of the plan would otherwise
        each compile on their first request, holding everyone queued behind that batch;
        warmed, they compile one call at a time between the other batches (`_warm_up`),
        and every checkpoint in memory is warm, a reloaded one included. Nothing to
        compile (eager, `--warmup-sizes auto`): no warm-up at all."""
        registry = self.require_registry()
        model = registry.loaded(name)
        if model is not None and model.warmed and name not in self._preparing:
            return model
        return await asyncio.shield(self._prepare(name, WarmupProgress()))

    def _prepare(
        self,
        name: str,
        progress: WarmupProgress,
        before_load: Callable[[], Awaitable[None]] | None = None,
    ) -> asyncio.Task[LoadedModel]:
        """The one task that loads and warms `name` (a new one unless one is running)."""
        task = self._preparing.get(name)
        if task is None:
            task = asyncio.create_task(self._load_and_warm(name, progress, before_load), name=f"prepare {name}")
            self._preparing[name] = task
            task.add_done_callback(functools.partial(self._prepared, name))
        return task

    def _prepared(self, name: str, task: asyncio.Task) -> None:
        if self._preparing.get(name) is task:
            del self._preparing[name]
        if not task.cancelled():
            task.exception()  # retrieved: whoever awaited it (if anyone still does) reports it

    async def _load_and_warm(
        self, name: str, progress: WarmupProgress, before_load: Callable[[], Awaitable[None]] | None
    ) -> LoadedModel:
        if before_load is not None:
            await before_load()
        registry = self.require_registry()
        for _ in range(3):
            model = registry.loaded(name)
            if model is None:
                try:
                    model = await asyncio.to_thread(registry.get, name)
                except Exception as error:
                    raise GenerationFailed(
                        f"could not load checkpoint {name}: {type(error).__name__}: {error}"
                    ) from error
            if model.warmed:
                return model
            try:
                await self._warm_up(model, self._warmup_calls(model), progress)
            except Exception as error:
                log.error("warm-up of %s failed", name, exc_info=error)
                raise GenerationFailed(
                    f"checkpoint {name} failed to warm up: {type(error).__name__}: {error}"
                ) from error
            if registry.loaded(name) is model:
                model.warmed = True
                return model
            # Its calls found it evicted (more checkpoints in use than --max-loaded-models)
            # and loaded it again: that new copy is not the one warmed.
            log.warning("%s was unloaded while it warmed up (--max-loaded-models %d); warming it again",
                        name, registry.max_loaded)
        log.warning("%s keeps being unloaded while it warms up; serving it as it is", name)
        return await asyncio.to_thread(registry.get, name)

    async def select_model(self, wanted: str, stamp: SwitchStamp | None = None) -> LoadedModel | None:
        """Make a checkpoint the current one (POST /sdapi/v1/options): loaded and warmed
        first, then current. ModelNotFound (nothing changes) names the choices;
        GenerationFailed names a checkpoint that could not be loaded or warmed, and the
        current one stays. None, and nothing changes, when `stamp` is not newer than the
        stamp of the current checkpoint once the switches that arrived before this one
        are done (so a switch being applied counts, and one that failed does not)."""
        self.require_started()
        name = self.require_registry().resolve(wanted)
        async with self._switching:
            current = self.switch_stamp
            if stamp is not None and current is not None and stamp <= current:
                log.info("switch to %s (stamped %s) not applied: superseded by a newer switch (to %s, stamped %s)",
                         name, stamp, self.current_model, current)
                return None
            return await self._switch_to(name, WarmupProgress(), stamp)

    async def adopt_model(self, name: str, stamp: SwitchStamp | None = None) -> LoadedModel:
        """Make a checkpoint (by its name) the current one before ready (the peers' one,
        service/replica_checkpoint.py), loaded and warmed first: /readyz says `warming`
        with its progress meanwhile, as for the default's warm-up. Its `stamp` becomes
        this replica's, newer or not."""
        async with self._switching:
            return await self._switch_to(name, self.warmup, stamp)

    async def _switch_to(self, name: str, progress: WarmupProgress, stamp: SwitchStamp | None) -> LoadedModel:
        """Load and warm `name`, then make it current (`_switching` held).

        While it warms, requests that name no checkpoint run on the current one. Unless
        the current one has to be unloaded to make room for it (`--max-loaded-models`,
        1 by default): then the requests already queued run first, requests arriving
        meanwhile wait for the new checkpoint (as A1111, which holds one checkpoint,
        has every request wait for a switch), and only then is it loaded; otherwise
        each queued request would load the old one back and unload the new one."""
        previous, previous_stamp = self.current_model, self.switch_stamp
        before_load = self.require_batcher().drain if self._unloads(previous, name) else None
        task = self._prepare(name, progress, before_load)
        if before_load is not None:
            self.current_model, self.switch_stamp = name, stamp
        try:
            model = await asyncio.shield(task)
        except Exception as error:
            if self.current_model == name:
                self.current_model, self.switch_stamp = previous, previous_stamp
            await self._restore(previous)
            raise GenerationFailed(f"{error}; the current checkpoint stays {self.current_model}") from error
        self.current_model, self.switch_stamp = model.name, stamp
        return model

    def _unloads(self, current: str, name: str) -> bool:
        """Whether loading `name` would unload `current` (the least recently used go first)."""
        registry = self.require_registry()
        if name == current or registry.loaded(name) is not None:
            return False
        loaded = registry.loaded_names()  # least recently used first
        return current in loaded[: max(0, len(loaded) - registry.max_loaded + 1)]

    async def _restore(self, name: str) -> None:
        """After a failed switch: the current checkpoint back in memory, warm, if the
        switch unloaded it (a replica left with no checkpoint loaded is not ready)."""
        try:
            await self._prepare(name, WarmupProgress())
        except Exception as error:
            log.error("after the failed switch, %s could not be loaded again: %s: %s", name, type(error).__name__, error)

    @property
    def starting(self) -> bool:
        """Loading, warming up or syncing: not failed, not draining, not yet ready once."""
        return self.readiness()[1] in ("loading", "warming", "syncing")

    def readiness(self) -> tuple[bool, str]:
        if self.load_error:
            return False, "failed"
        if self.draining:
            return False, "draining"
        if self.registry is None or not self.registry.loaded_names():
            return False, "loading"
        if self.warmup.active:
            return False, "warming"
        if self.syncing:
            return False, "syncing"
        if self.batcher is None or not self.batcher.alive:
            return False, "worker stopped"
        stall = self.settings.stall_seconds
        if self.batcher.stalled or (stall and self.batcher.seconds_without_progress() > stall):
            # A hung call (a stuck GPU, say) holds every admitted request: take the pod
            # out of the Service instead of answering 429 to everyone behind it.
            return False, "wedged"
        return True, "ready"

    def liveness(self) -> tuple[bool, str]:
        """False once a pipeline call has been stuck for twice --stall-seconds: its thread
        cannot be stopped, so only a restart frees the accelerator."""
        stall = self.settings.stall_seconds
        stuck = self.batcher.seconds_without_progress() if self.batcher is not None else 0.0
        if stall and stuck > 2 * stall:
            return False, f"a pipeline call has made no step progress for {stuck:.0f}s"
        return True, "ok"


def _never_stop(step: int, total: int) -> bool:
    """A warm-up call's step callback: interrupt and skip stop requests, not warm-ups."""
    return False


class _QueueDepthFromAdmission:
    """The batcher's observer: the metrics, except that the queue depth is admission's."""

    def __init__(self, runtime: Runtime):
        self._runtime = runtime
        self._metrics = runtime.metrics

    def __getattr__(self, name: str):
        return getattr(self._metrics, name)

    def queue_changed(self, depth: int, waiting: int, running: int) -> None:
        self._metrics.queue_changed(max(depth, self._runtime.admission.held), waiting, running)
