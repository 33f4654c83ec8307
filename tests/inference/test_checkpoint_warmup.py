"""Every checkpoint is warmed up before it becomes current, not only the default
(service/runtime.py): a switch (POST /sdapi/v1/options), a replica adopting its peers'
checkpoint, a checkpoint a request names, one loaded again after eviction.

`--warmup-sizes 64x64` forces a warm-up on the CPU (3 calls: buckets 1 and 2 with CFG, 1
without, engine/warmup.py); a wrapped
runner records every pipeline call, can hold a checkpoint's warm-up calls until the test
lets them go, and can make them fail (a UNet inductor cannot compile)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
import time
from types import SimpleNamespace

import httpx
import pytest

from inference.api.app import create_app
from inference.config import ServerSettings
from inference.engine.warmup import WarmupCall
from inference.service import runtime as runtime_module
from inference.service.options import A1111State
from inference.service.peers import Peers
from inference.service.replica_checkpoint import ReplicaCheckpoint
from inference.service.runtime import Runtime

from .conftest import info_of
from .peer_fixtures import PEERS_NAME, port_free_on_every_address
from .peer_fixtures import replicas as peer_replicas
from .server import ThreadedServer

TINY, SDXL = "builtin:tiny", "builtin:tiny-sdxl"
OPTIONS = "/sdapi/v1/options"
SMALL = {"prompt": "a lighthouse", "seed": 5, "steps": 2, "width": 64, "height": 64}
WARMUP_CALLS = 3  # 64x64 at buckets 1 and 2 with CFG, and bucket 1 without


class Pipeline:
    """The batch runner, wrapped: records (checkpoint, prompt) per call; warm-up calls of
    `held` wait, one by one, for the test (`let_one_go`); those of `failing` raise."""

    def __init__(self, replica: int | None = None):
        self.calls: list[tuple[str, str]] = []
        self.replica = replica  # with several servers: only the one made `replica`-th is watched
        self._made = 0
        self.held: str | None = None
        self.failing: set[str] = set()
        self.readiness_while_warming: list[tuple[bool, str]] = []
        self.runtime: Runtime | None = None
        self._entered = threading.Semaphore(0)
        self._released = threading.Semaphore(0)

    def wrap(self, runner):
        made, self._made = self._made, self._made + 1
        if self.replica is not None and made != self.replica:
            return runner

        def call(key, tasks, on_step):
            warm_up = tasks[0].prompt == "warm-up"
            self.calls.append((key.model, tasks[0].prompt))
            if warm_up and self.runtime is not None and key.model == SDXL:
                self.readiness_while_warming.append(self.runtime.readiness())
            if warm_up and key.model == self.held:
                self._entered.release()
                assert self._released.acquire(timeout=60), "the test never let the warm-up call go"
            if warm_up and key.model in self.failing:
                raise RuntimeError("inductor could not compile this UNet")
            return runner(key, tasks, on_step)

        return call

    def wait_until_held(self) -> None:
        assert self._entered.acquire(timeout=60), "no warm-up call of the held checkpoint came"

    def let_one_go(self) -> None:
        self._released.release()

    def warmups(self, model: str, since: int = 0) -> int:
        return sum(1 for name, prompt in self.calls[since:] if name == model and prompt == "warm-up")


@contextlib.contextmanager
def served(cache_dir, **settings):
    pipeline = Pipeline()
    options = dict(model=[TINY, SDXL], cache_dir=cache_dir, warmup_sizes=["64x64"], max_batch_size=2,
                   max_loaded_models=2, batch_window_ms=0)
    options.update(settings)
    app = create_app(ServerSettings(**options), wrap_runner=pipeline.wrap)
    with ThreadedServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        yield client, pipeline, app.state.runtime


def _select(client, name):
    return client.post(OPTIONS, json={"sd_model_checkpoint": name})


def _current(client) -> str:
    answer = client.get(OPTIONS)
    assert answer.status_code == 200, answer.text
    return answer.json()["sd_model_checkpoint"]


def _model_of(answer: httpx.Response) -> str:
    assert answer.status_code == 200, answer.text
    return info_of(answer)["sd_model_name"]


def _wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_switch_answers_once_the_checkpoint_is_warm(cache_dir):
    with served(cache_dir) as (client, pipeline, runtime):
        assert pipeline.warmups(TINY) == WARMUP_CALLS and pipeline.warmups(SDXL) == 0  # the default, at start
        switched = _select(client, SDXL)
        assert switched.status_code == 200 and switched.json() is None
        assert pipeline.warmups(SDXL) == WARMUP_CALLS
        assert _current(client) == SDXL
        # Warm: its requests compile nothing more, and switching back warms nothing again.
        before = len(pipeline.calls)
        assert _model_of(client.post("/sdapi/v1/txt2img", json=SMALL)) == SDXL
        assert _select(client, TINY).status_code == 200 and _select(client, SDXL).status_code == 200
        assert pipeline.calls[before:] == [(SDXL, SMALL["prompt"])]


def test_requests_during_a_switchs_warm_up_run_on_the_current_checkpoint_between_its_calls(cache_dir):
    with served(cache_dir) as (client, pipeline, runtime), concurrent.futures.ThreadPoolExecutor(2) as pool:
        start = len(pipeline.calls)
        pipeline.held = SDXL
        switch = pool.submit(_select, client, SDXL)
        pipeline.wait_until_held()  # its first warm-up call is on the pipeline thread
        request = pool.submit(client.post, "/sdapi/v1/txt2img", json=SMALL)
        _wait_for(lambda: runtime.batcher.call_in_flight, "the request's batch was never queued")
        pipeline.let_one_go()
        # The request ran between the first two warm-up calls, on the checkpoint still current.
        assert _model_of(request.result(timeout=60)) == TINY
        for _ in range(WARMUP_CALLS - 1):  # the other warm-up calls
            pipeline.wait_until_held()
            assert not switch.done() and _current(client) == TINY
            pipeline.let_one_go()
        assert switch.result(timeout=60).status_code == 200
        assert _current(client) == SDXL
        assert pipeline.calls[start:] == [(SDXL, "warm-up"), (TINY, SMALL["prompt"])] + [(SDXL, "warm-up")] * 2


def test_concurrent_switches_run_one_after_the_other_and_the_last_asked_for_stays(cache_dir):
    with served(cache_dir) as (client, pipeline, runtime), concurrent.futures.ThreadPoolExecutor(2) as pool:
        pipeline.held = SDXL
        first = pool.submit(_select, client, SDXL)
        pipeline.wait_until_held()
        # tiny is loaded and warm: alone, this switch would answer at once.
        second = pool.submit(_select, client, TINY)
        time.sleep(0.5)
        assert not second.done(), "the second switch did not wait for the first"
        pipeline.let_one_go()
        for _ in range(WARMUP_CALLS - 1):
            pipeline.wait_until_held()
            pipeline.let_one_go()
        assert first.result(timeout=60).status_code == 200 and second.result(timeout=60).status_code == 200
        assert _current(client) == TINY
        assert _model_of(client.post("/sdapi/v1/txt2img", json=SMALL)) == TINY
        assert pipeline.warmups(SDXL) == WARMUP_CALLS


@pytest.mark.parametrize("max_loaded", [1, 2])
def test_a_warm_up_that_fails_fails_the_switch_naming_it_and_the_current_checkpoint_stays(cache_dir, max_loaded):
    with served(cache_dir, max_loaded_models=max_loaded) as (client, pipeline, runtime):
        pipeline.failing = {SDXL}
        failed = _select(client, SDXL)
        assert failed.status_code == 500, failed.text
        detail = failed.json()["detail"]
        assert f"checkpoint {SDXL} failed to warm up" in detail and "could not compile" in detail
        assert f"the current checkpoint stays {TINY}" in detail
        assert pipeline.warmups(SDXL) == 1  # it stopped at the first failing call
        # Never wedged: ready, on the old checkpoint (loaded again if the switch unloaded it).
        assert client.get("/readyz").json()["status"] == "ready"
        assert _current(client) == TINY and TINY in runtime.registry.loaded_names()
        assert _model_of(client.post("/sdapi/v1/txt2img", json=SMALL)) == TINY
        # Once it compiles, the same switch goes through.
        pipeline.failing = set()
        assert _select(client, SDXL).status_code == 200 and _current(client) == SDXL


def test_a_checkpoint_a_request_names_is_warmed_before_it_runs_and_again_after_eviction(cache_dir):
    with served(cache_dir, max_loaded_models=1) as (client, pipeline, runtime):
        start = len(pipeline.calls)
        named = client.post("/sdapi/v1/txt2img", json={**SMALL, "override_settings": {"sd_model_checkpoint": SDXL}})
        assert _model_of(named) == SDXL
        assert pipeline.calls[start:] == [(SDXL, "warm-up")] * WARMUP_CALLS + [(SDXL, SMALL["prompt"])]
        # tiny was unloaded to make room: loaded again, it is warmed again before it serves.
        start = len(pipeline.calls)
        assert _model_of(client.post("/sdapi/v1/txt2img", json=SMALL)) == TINY
        assert pipeline.calls[start:] == [(TINY, "warm-up")] * WARMUP_CALLS + [(TINY, SMALL["prompt"])]


def test_with_nothing_to_compile_a_switch_warms_nothing(cache_dir):
    # The CPU default (eager, --warmup-sizes auto): no warm-up call anywhere.
    with served(cache_dir, warmup_sizes=["auto"]) as (client, pipeline, runtime):
        assert _select(client, SDXL).status_code == 200
        assert _model_of(client.post("/sdapi/v1/txt2img", json=SMALL)) == SDXL
        assert pipeline.calls == [(SDXL, SMALL["prompt"])]


def test_a_starting_replica_warms_the_checkpoint_it_adopts_before_it_is_ready(cache_dir):
    pipeline = Pipeline()
    settings = ServerSettings(model=[TINY, SDXL], cache_dir=cache_dir, max_loaded_models=2, warmup_sizes=["64x64"],
                              max_batch_size=2)
    runtime = pipeline.runtime = Runtime(settings, wrap_runner=pipeline.wrap)

    class StubPeers(Peers):
        async def fetch(self, peer, method, path, **kwargs):
            return json.dumps({"sd_model_checkpoint": SDXL}).encode()

    async def dns(name: str) -> list[str]:
        return ["10.0.0.1", "10.0.0.2"]

    peers = StubPeers("10.0.0.1", "peers.example", 8000, max_bytes=1, resolver=dns)
    checkpoint = ReplicaCheckpoint(A1111State(runtime), peers, path=OPTIONS, switch_timeout_seconds=1)
    runtime.before_ready = checkpoint.adopt_from_peers

    async def scenario() -> int:
        await runtime.start()
        try:
            for _ in range(600):
                if runtime.readiness()[0]:
                    return pipeline.warmups(SDXL)  # counted the moment it is ready
                await asyncio.sleep(0.05)
            raise AssertionError(f"never ready: {runtime.readiness()}")
        finally:
            await runtime.stop()

    assert asyncio.run(scenario()) == WARMUP_CALLS
    assert runtime.current_model == SDXL
    # /readyz meanwhile: warming, with the adopted checkpoint's progress, as for the default.
    assert pipeline.readiness_while_warming == [(False, "warming")] * WARMUP_CALLS
    assert (runtime.warmup.done, runtime.warmup.total) == (WARMUP_CALLS, WARMUP_CALLS)


def test_the_compile_cache_is_activated_once_keyed_by_the_first_checkpoint(cache_dir, monkeypatch):
    activated = []
    monkeypatch.setattr(runtime_module, "platform_fingerprint", lambda device: {"device": device})
    monkeypatch.setattr(runtime_module, "activate_compile_cache",
                        lambda directory, key: activated.append(key) or SimpleNamespace(directory=directory / "c"))
    runtime = Runtime(ServerSettings(model=[TINY, SDXL], cache_dir=cache_dir))
    device = SimpleNamespace(device="cuda", dtype_name="float16")
    plan = [WarmupCall(64, 64, 1)]
    for name in (TINY, SDXL):
        runtime._use_compile_cache(SimpleNamespace(name=name, fast_path=None, device=device), plan)
    # Inductor's cache directory is process-wide and the two compile interleaved: one directory.
    assert [key["model"] for key in activated] == [TINY]


def test_a_peer_still_warming_past_the_switch_timeout_switches_when_warm(cache_dir):
    # Replica B's warm-up of the checkpoint outlasts A's --peer-switch-timeout-seconds: A
    # answers at the timeout; B, not cancelled by A hanging up, switches once warm.
    a_address, b_address = "127.0.0.1", "127.0.0.2"
    port = port_free_on_every_address([a_address, b_address])
    pipeline = Pipeline(replica=1)  # B's calls
    settings = dict(model=[TINY, SDXL], cache_dir=cache_dir, warmup_sizes=["64x64"], max_batch_size=2,
                    max_loaded_models=2, peer_switch_timeout_seconds=1.0)

    def resolve(name):
        return [a_address, b_address] if name == PEERS_NAME else []

    with peer_replicas([a_address, b_address], port, resolve, wrap_runner=pipeline.wrap, **settings) as (a, b):
        pipeline.held = SDXL
        started = time.monotonic()
        switched = httpx.post(f"{a.url}{OPTIONS}", json={"sd_model_checkpoint": SDXL}, timeout=60)
        assert switched.status_code == 200 and time.monotonic() - started < 30
        pipeline.wait_until_held()
        assert httpx.get(f"{b.url}{OPTIONS}", timeout=10).json()["sd_model_checkpoint"] == TINY  # not warm yet
        pipeline.let_one_go()
        for _ in range(WARMUP_CALLS - 1):
            pipeline.wait_until_held()
            pipeline.let_one_go()
        _wait_for(lambda: httpx.get(f"{b.url}{OPTIONS}", timeout=10).json()["sd_model_checkpoint"] == SDXL,
                  "B never switched after its warm-up")
        assert pipeline.warmups(SDXL) == WARMUP_CALLS
