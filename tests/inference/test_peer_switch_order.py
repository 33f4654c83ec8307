"""Checkpoint switches that cross between replicas (service/replica_checkpoint.py): the last
writer wins on every replica, by the stamp taken where the switch entered the system.

Real replicas A (127.0.0.1) and B (127.0.0.2) share a port, offer builtin:tiny (the
default) and builtin:tiny-sdxl and resolve `--peers` to each other; with auth on and the
replicas' shared token unless a test says otherwise. A wrapped runner holds A's warm-up of
a checkpoint (test_checkpoint_warmup.Pipeline) to force an interleaving."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import time

import httpx
import pytest

from inference.config import ServerSettings
from inference.service.options import A1111State
from inference.service.peers import (
    LOCAL_ONLY_HEADER,
    PEER_TOKEN_HEADER,
    SWITCH_STAMP_HEADER,
    SWITCH_STAMP_OPTION,
    Peers,
    SwitchStamp,
)
from inference.service.replica_checkpoint import ReplicaCheckpoint
from inference.service.runtime import Runtime

from .peer_fixtures import PEERS_NAME, port_free_on_every_address, write_htpasswd
from .peer_fixtures import replicas as peer_replicas
from .test_checkpoint_warmup import WARMUP_CALLS, Pipeline

PASSWORD = "order-test-pass"
AUTH = ("admin", PASSWORD)
PEER_TOKEN = "order-t0k3n-the-replicas-share-0123"
A, B = "127.0.0.1", "127.0.0.2"
TINY, SDXL = "builtin:tiny", "builtin:tiny-sdxl"
OPTIONS = "/sdapi/v1/options"
SMALL = {"prompt": "a lighthouse", "seed": 5, "steps": 2, "width": 64, "height": 64}
TIE = "0" * 16  # a stamp's tie-breaker, as a test writes it


@pytest.fixture(scope="module")
def port() -> int:
    return port_free_on_every_address([A, B])


def _resolve(name: str) -> list[str]:
    return [A, B] if name == PEERS_NAME else []


@pytest.fixture(scope="module")
def secrets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("order-auth")
    write_htpasswd(folder / "htpasswd", PASSWORD)
    (folder / "peer-token").write_text(PEER_TOKEN + "\n")
    return folder


def _settings(cache_dir, secrets=None, **more):
    auth = dict(auth_file=secrets / "htpasswd", peer_token_file=secrets / "peer-token") if secrets else {}
    return dict(model=[TINY, SDXL], max_loaded_models=2, cache_dir=cache_dir, peer_switch_timeout_seconds=60,
                **auth, **more)


@pytest.fixture(scope="module")
def replicas(cache_dir, secrets, port):
    with peer_replicas([A, B], port, _resolve, **_settings(cache_dir, secrets)) as (a, b):
        yield a, b


def _select(server, name: str, *, headers=None, auth=AUTH) -> httpx.Response:
    return httpx.post(f"{server.url}{OPTIONS}", json={"sd_model_checkpoint": name}, auth=auth,
                      headers=headers or {}, timeout=120)


def _forwarded(server, name: str, stamp: str, *, token: str | None = PEER_TOKEN, auth=AUTH) -> httpx.Response:
    """A switch as a replica forwards it: local-only, the client's credentials, the stamp
    and (unless None) the token."""
    headers = {LOCAL_ONLY_HEADER: "1", SWITCH_STAMP_HEADER: stamp}
    if token is not None:
        headers[PEER_TOKEN_HEADER] = token
    return _select(server, name, headers=headers, auth=auth)


def _current(server, auth=AUTH) -> str:
    answer = httpx.get(f"{server.url}{OPTIONS}", auth=auth, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["sd_model_checkpoint"]


def _reset(*servers, auth=AUTH) -> None:
    for server in servers:
        assert _select(server, TINY, headers={LOCAL_ONLY_HEADER: "1"}, auth=auth).status_code == 200
        assert _current(server, auth) == TINY


def _runtime(server) -> Runtime:
    return server.server.config.app.state.runtime


def _wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _superseded(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "superseded by a newer switch" in r.getMessage()]


def test_crossing_switches_end_on_the_later_stamped_checkpoint_on_every_replica(cache_dir, secrets, caplog):
    # Client 1 switches to sdxl through A; A's warm-up of it is held. Meanwhile client 2
    # switches to tiny through B (later stamped), which applies it at once (warm there) and forwards it
    # to A (queued behind sdxl). Then A finishes sdxl and forwards it to B. In arrival
    # order A would end on tiny and B on sdxl, for good.
    caplog.set_level(logging.INFO, logger="inference.service.runtime")
    port = port_free_on_every_address([A, B])
    pipeline = Pipeline(replica=0)  # A's calls
    settings = _settings(cache_dir, secrets, warmup_sizes=["64x64"], max_batch_size=2)
    with (peer_replicas([A, B], port, _resolve, wrap_runner=pipeline.wrap, **settings) as (a, b),
          concurrent.futures.ThreadPoolExecutor(2) as pool):
        # B on sdxl (and tiny still warm there), A on tiny: each switch below is visible.
        assert _select(b, SDXL, headers={LOCAL_ONLY_HEADER: "1"}).status_code == 200
        pipeline.held = SDXL
        first = pool.submit(_select, a, SDXL)
        pipeline.wait_until_held()  # stamped on arrival at A, and A is warming it
        second = pool.submit(_select, b, TINY)
        _wait_for(lambda: _current(b) == TINY, "B never applied the second switch")
        pipeline.let_one_go()
        for _ in range(WARMUP_CALLS - 1):
            pipeline.wait_until_held()
            pipeline.let_one_go()
        assert first.result(timeout=60).status_code == 200 and first.result().json() is None
        assert second.result(timeout=60).status_code == 200 and second.result().json() is None
        assert (_current(a), _current(b)) == (TINY, TINY)
        # The same stamp on both, and the older switch answered but not applied on B.
        assert _runtime(a).switch_stamp == _runtime(b).switch_stamp
        assert [m for m in _superseded(caplog) if f"switch to {SDXL}" in m]
        for server in (a, b):  # requests naming no checkpoint get the same one everywhere
            image = httpx.post(f"{server.url}/sdapi/v1/txt2img", json=SMALL, auth=AUTH, timeout=120)
            assert json.loads(image.json()["info"])["sd_model_name"] == TINY


def test_an_older_forwarded_switch_is_answered_but_not_applied(replicas, caplog):
    caplog.set_level(logging.INFO, logger="inference.service.runtime")
    a, b = replicas
    _reset(a, b)
    before = time.time_ns()
    assert _select(a, SDXL).status_code == 200
    assert (_current(a), _current(b)) == (SDXL, SDXL)
    # A switch that entered (at another replica) before the one A applied, arriving late.
    late = _forwarded(a, TINY, f"{before}-{TIE}")
    assert late.status_code == 200 and late.json() is None
    assert _current(a) == SDXL
    assert any(f"switch to {TINY}" in m for m in _superseded(caplog))
    # A newer one is applied.
    newer = _forwarded(a, TINY, f"{time.time_ns()}-{TIE}")
    assert newer.status_code == 200 and _current(a) == TINY


def test_a_stamp_a_client_sends_is_ignored(replicas):
    a, b = replicas
    _reset(a, b)
    future = f"{time.time_ns() + 10**18}-{TIE}"  # 30 years ahead: it would pin B's checkpoint
    for token in (None, "not-the-token-the-replicas-share-00"):
        assert _forwarded(b, SDXL, future, token=token).status_code == 200
        assert _current(b) == SDXL  # applied, stamped on arrival at B
        # The next switch (through A) still reaches B.
        assert _select(a, TINY).status_code == 200
        assert (_current(a), _current(b)) == (TINY, TINY)
    # A client's stamp far in the past does not make its switch superseded either.
    assert _forwarded(b, SDXL, f"1-{TIE}", token=None).status_code == 200 and _current(b) == SDXL
    # Nor does a stamp without the local-only header, token or not.
    assert _select(a, SDXL).status_code == 200
    headers = {SWITCH_STAMP_HEADER: future, PEER_TOKEN_HEADER: PEER_TOKEN}
    assert _select(b, TINY, headers=headers).status_code == 200
    assert _select(a, SDXL).status_code == 200
    assert (_current(a), _current(b)) == (SDXL, SDXL)


def test_a_stamp_cannot_be_planted_as_a_stored_option(replicas):
    a, b = replicas
    _reset(a, b)
    planted = f"{time.time_ns() + 10**18}-{TIE}"
    answer = httpx.post(f"{a.url}{OPTIONS}", json={SWITCH_STAMP_OPTION: planted}, auth=AUTH, timeout=30)
    assert answer.status_code == 200
    read = httpx.get(f"{a.url}{OPTIONS}", headers={LOCAL_ONLY_HEADER: "1", PEER_TOKEN_HEADER: PEER_TOKEN}, timeout=30)
    assert read.status_code == 200
    # What a starting replica reads: A's own stamp (of its last switch), never the planted one.
    assert read.json()[SWITCH_STAMP_OPTION] == str(_runtime(a).switch_stamp)
    assert SWITCH_STAMP_OPTION not in httpx.get(f"{a.url}{OPTIONS}", auth=AUTH, timeout=30).json()


def test_a_switch_made_after_another_was_answered_wins_however_far_behind_its_replicas_clock_is(replicas):
    a, b = replicas
    _reset(a, b)
    checkpoint = b.server.config.app.state.checkpoint
    checkpoint._clock = lambda: time.time_ns() - 3600 * 10**9  # B's clock an hour behind A's
    try:
        assert _select(a, SDXL).status_code == 200 and _current(b) == SDXL
        # B has seen A's stamp: its own comes after it, not an hour before.
        assert _select(b, TINY).status_code == 200
        assert (_current(a), _current(b)) == (TINY, TINY)
    finally:
        checkpoint._clock = time.time_ns


def test_without_a_peer_token_stamps_count_unless_far_ahead(cache_dir):
    # Auth off (no token): a forwarded stamp is believed, unless more than
    # MAX_STAMP_AHEAD_SECONDS ahead of the replica's clock (then a client could pin it).
    port = port_free_on_every_address([A, B])
    with peer_replicas([A, B], port, _resolve, **_settings(cache_dir)) as (a, b):
        _reset(a, b, auth=None)
        before = time.time_ns()
        assert _select(a, SDXL, auth=None).status_code == 200 and _current(b, None) == SDXL
        assert _forwarded(b, TINY, f"{before}-{TIE}", token=None, auth=None).status_code == 200
        assert _current(b, None) == SDXL  # older: not applied
        assert _forwarded(b, TINY, f"{time.time_ns() + 3600 * 10**9}-{TIE}", token=None, auth=None).status_code == 200
        assert _current(b, None) == TINY  # applied, but stamped here: it pins nothing
        assert _select(a, SDXL, auth=None).status_code == 200
        assert (_current(a, None), _current(b, None)) == (SDXL, SDXL)


# -- a starting replica ------------------------------------------------------------------


def test_a_starting_replica_adopts_the_newest_switch_and_its_stamp(cache_dir):
    runtime = Runtime(ServerSettings(model=[TINY, SDXL], cache_dir=cache_dir, max_loaded_models=2))
    newest = SwitchStamp(2_000, TIE)
    reports = {  # one peer already switched to sdxl; the others have not had it yet
        "10.0.0.2": {"sd_model_checkpoint": SDXL, SWITCH_STAMP_OPTION: str(newest)},
        "10.0.0.3": {"sd_model_checkpoint": TINY, SWITCH_STAMP_OPTION: f"1000-{TIE}"},
        "10.0.0.4": {"sd_model_checkpoint": TINY},
    }

    class StubPeers(Peers):
        async def fetch(self, peer, method, path, **kwargs):
            return json.dumps(reports[str(peer)]).encode()

    async def dns(name: str) -> list[str]:
        return ["10.0.0.1", *reports]

    peers = StubPeers("10.0.0.1", "peers.example", 8000, max_bytes=1, resolver=dns, token=PEER_TOKEN)
    checkpoint = ReplicaCheckpoint(A1111State(runtime), peers, path=OPTIONS, switch_timeout_seconds=1)
    runtime.before_ready = checkpoint.adopt_from_peers

    async def forwarded(name: str, stamp: str) -> str:
        await checkpoint.set_options({"sd_model_checkpoint": name}, authorization=None, local_only=True,
                                     stamp=stamp, peer_token=PEER_TOKEN)
        return runtime.current_model

    async def scenario() -> list[object]:
        await runtime.start()
        try:
            for _ in range(600):
                if runtime.readiness()[0]:
                    break
                await asyncio.sleep(0.1)
            seen: list[object] = [runtime.current_model, runtime.switch_stamp]
            # A switch older than the adopted one (in flight from before) is not applied.
            seen.append(await forwarded(TINY, f"1500-{TIE}"))
            seen.append(await forwarded(TINY, f"2500-{TIE}"))
            return seen
        finally:
            await runtime.stop()

    # The majority says tiny, but sdxl's switch is the newest: every replica ends on it.
    assert asyncio.run(scenario()) == [SDXL, newest, SDXL, TINY]


def test_a_switch_forwarded_while_starting_wins_only_if_newer_than_what_the_peers_report(cache_dir):
    runtime = Runtime(ServerSettings(model=[TINY, SDXL], cache_dir=cache_dir, max_loaded_models=2))

    class StubPeers(Peers):
        async def fetch(self, peer, method, path, **kwargs):
            return json.dumps({"sd_model_checkpoint": TINY, SWITCH_STAMP_OPTION: f"3000-{TIE}"}).encode()

    async def dns(name: str) -> list[str]:
        return ["10.0.0.1", "10.0.0.2"]

    peers = StubPeers("10.0.0.1", "peers.example", 8000, max_bytes=1, resolver=dns, token=PEER_TOKEN)
    checkpoint = ReplicaCheckpoint(A1111State(runtime), peers, path=OPTIONS, switch_timeout_seconds=1)
    runtime.before_ready = checkpoint.adopt_from_peers

    async def scenario() -> tuple[str, SwitchStamp | None]:
        await runtime.start()
        try:
            # Forwarded while loading, but older than the switch the peers report.
            await checkpoint.set_options({"sd_model_checkpoint": SDXL}, authorization=None, local_only=True,
                                         stamp=f"2000-{TIE}", peer_token=PEER_TOKEN)
            for _ in range(600):
                if runtime.readiness()[0]:
                    break
                await asyncio.sleep(0.1)
            return runtime.current_model, runtime.switch_stamp
        finally:
            await runtime.stop()

    assert asyncio.run(scenario()) == (TINY, SwitchStamp(3000, TIE))
