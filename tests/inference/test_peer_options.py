"""The current checkpoint behind several replicas (service/replica_checkpoint.py): two real
servers, A on 127.0.0.1 and B on 127.0.0.2 (the same port, as pods share a container port),
each offering builtin:tiny (the default) and builtin:tiny-sdxl, with auth on and the
replicas' shared token; their `--peers` name resolves (a fake resolver) to them, to C (a
third replica some tests start), to LISTENER (where tests put a FakePeer) and to DOWN
(nothing listens)."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
import pytest

from inference.config import ServerSettings
from inference.errors import InvalidInput
from inference.infotext import parse_infotext
from inference.service.options import A1111State
from inference.service.peers import LOCAL_ONLY_HEADER, PEER_TOKEN_HEADER, SWITCH_STAMP_HEADER, Peers, SwitchStamp
from inference.service.replica_checkpoint import ReplicaCheckpoint, majority_checkpoint
from inference.service.runtime import Runtime

from .conftest import decode_png, info_of
from .peer_fixtures import PEERS_NAME, FakePeer, port_free_on_every_address, write_htpasswd
from .peer_fixtures import replicas as peer_replicas

PASSWORD = "options-test-pass"
AUTH = ("admin", PASSWORD)
PEER_TOKEN = "t0k3n-the-replicas-share-0123456789"
A, B, C = "127.0.0.1", "127.0.0.2", "127.0.0.4"
LISTENER = "127.0.0.3"
DOWN = "127.0.0.5"
TINY, SDXL = "builtin:tiny", "builtin:tiny-sdxl"
MODELS = [TINY, SDXL]
SWITCH_TIMEOUT = 2.0  # --peer-switch-timeout-seconds of A and B
OPTIONS = "/sdapi/v1/options"
SMALL = {"prompt": "a lighthouse", "seed": 5, "steps": 2, "width": 64, "height": 64}


@pytest.fixture(scope="module")
def port() -> int:
    return port_free_on_every_address([A, B, C, LISTENER, DOWN])


def _resolve(name: str) -> list[str]:
    return [A, B, C, LISTENER, DOWN] if name == PEERS_NAME else []


@pytest.fixture(scope="module")
def secrets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("options-auth")
    write_htpasswd(folder / "htpasswd", PASSWORD)
    (folder / "peer-token").write_text(PEER_TOKEN + "\n")
    (folder / "wrong-token").write_text("not-the-token-the-others-have-0000\n")
    return folder


def _settings(cache_dir, secrets, token_file="peer-token", **more):
    return dict(model=MODELS, max_loaded_models=2, cache_dir=cache_dir, auth_file=secrets / "htpasswd",
                peer_token_file=secrets / token_file, max_width=256, max_height=256, **more)


@pytest.fixture(scope="module")
def replicas(cache_dir, secrets, port):
    settings = _settings(cache_dir, secrets, peer_switch_timeout_seconds=SWITCH_TIMEOUT)
    with peer_replicas([A, B], port, _resolve, **settings) as (a, b):
        yield a, b


def _select(server, name: str, *, local_only: bool = False, auth=AUTH, timeout: float = 60) -> httpx.Response:
    headers = {LOCAL_ONLY_HEADER: "1"} if local_only else {}
    return httpx.post(f"{server.url}{OPTIONS}", json={"sd_model_checkpoint": name}, auth=auth, headers=headers,
                      timeout=timeout)


def _current(server) -> str:
    answer = httpx.get(f"{server.url}{OPTIONS}", auth=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["sd_model_checkpoint"]


def _reset(*servers) -> None:
    """Every replica back on the default, each on its own (nothing forwarded)."""
    for server in servers:
        assert _select(server, TINY, local_only=True).status_code == 200
        assert _current(server) == TINY


def _model_of(answer: httpx.Response) -> tuple[str, str]:
    """The checkpoint an image was made with: by `info`, and by its PNG's infotext."""
    assert answer.status_code == 200, answer.text
    infotext = parse_infotext(decode_png(answer.json()["images"][0]).text["parameters"])
    return info_of(answer)["sd_model_name"], infotext["Model"]


def test_stablestudios_sequence_split_across_replicas_makes_the_selected_models_image(replicas):
    a, b = replicas
    _reset(a, b)
    # StableStudio's webui plugin: GET options, POST options when it differs, then txt2img
    # without a model; behind a Service each call may land on another replica.
    assert _current(a) != SDXL
    switched = _select(b, SDXL)
    assert switched.status_code == 200 and switched.json() is None
    image = httpx.post(f"{a.url}/sdapi/v1/txt2img", json=SMALL, auth=AUTH, timeout=120)
    assert _model_of(image) == (SDXL, SDXL)
    assert _current(a) == _current(b) == SDXL
    # And back, the other way round.
    assert _select(a, TINY).status_code == 200
    assert _model_of(httpx.post(f"{b.url}/sdapi/v1/txt2img", json=SMALL, auth=AUTH, timeout=120)) == (TINY, TINY)


def test_a_checkpoint_named_by_a1111s_title_with_hash_switches_the_peers_too(replicas):
    a, b = replicas
    _reset(a, b)
    entry = next(m for m in httpx.get(f"{a.url}/sdapi/v1/sd-models", auth=AUTH).json() if m["model_name"] == SDXL)
    # A1111's spelling, "title [short hash]" (the peers are sent the checkpoint's name).
    assert _select(a, f"{entry['title']} [{entry['hash']}]").status_code == 200
    assert _current(b) == SDXL


def test_an_unknown_checkpoint_is_a_422_and_nothing_is_forwarded(replicas, port):
    a, b = replicas
    _reset(a, b)
    with FakePeer(LISTENER, port) as listener:
        refused = _select(a, "sd_xl_base_1.0.safetensors")
        too_big = httpx.post(f"{a.url}{OPTIONS}", auth=AUTH, timeout=30,
                             json={"sd_model_checkpoint": SDXL, "huge": "x" * (65 * 1024)})
    assert refused.status_code == 422 and "sd_model_checkpoint" in refused.text
    assert "sd_xl_base_1.0.safetensors" in refused.text
    assert too_big.status_code == 422 and "huge" in too_big.text
    assert listener.requests == []
    assert _current(a) == _current(b) == TINY


def test_wrong_credentials_are_a_401_and_nothing_is_forwarded(replicas, port):
    a, b = replicas
    _reset(a, b)
    with FakePeer(LISTENER, port) as listener:
        answers = [_select(a, SDXL, auth=auth) for auth in (("admin", "wrong"), None)]
    assert [answer.status_code for answer in answers] == [401, 401]
    assert listener.requests == []
    assert _current(a) == _current(b) == TINY


def test_the_local_only_header_switches_only_that_replica(replicas, port):
    a, b = replicas
    _reset(a, b)
    with FakePeer(LISTENER, port) as listener:
        assert _select(a, SDXL, local_only=True).status_code == 200
    assert listener.requests == []
    assert (_current(a), _current(b)) == (SDXL, TINY)


def test_peers_are_told_with_the_clients_credentials_the_local_only_header_and_the_stamp(replicas, port):
    a, b = replicas
    _reset(a, b)
    with FakePeer(LISTENER, port) as listener:  # closes without an answer: logged, the switch still answers
        before = time.time_ns()
        answer = _select(b, SDXL)
        after = time.time_ns()
    assert answer.status_code == 200 and answer.json() is None
    (request,) = listener.requests
    head = request.decode("latin-1")
    assert head.lower().startswith(f"post {OPTIONS} http/1.1\r\n")
    assert f"\r\n{LOCAL_ONLY_HEADER}: 1\r\n" in head.lower()
    expected = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    assert f"\r\nAuthorization: {expected}\r\n" in head
    # The shared token vouches for the stamp: when the switch reached B (B's wall clock).
    assert f"\r\n{PEER_TOKEN_HEADER}: {PEER_TOKEN}\r\n" in head.lower()
    (stamp,) = [line.split(": ", 1)[1] for line in head.split("\r\n") if line.lower().startswith(SWITCH_STAMP_HEADER)]
    parsed = SwitchStamp.parse(stamp)
    assert parsed is not None and before <= parsed.nanoseconds <= after
    assert _current(a) == SDXL


def test_a_hung_peer_holds_the_switch_no_longer_than_the_bound(replicas, port):
    a, b = replicas
    _reset(a, b)
    with FakePeer(LISTENER, port, reply=None) as hanging:
        started = time.monotonic()
        answer = _select(b, SDXL)
        waited = time.monotonic() - started
    assert answer.status_code == 200 and answer.json() is None
    assert len(hanging.requests) == 1
    assert SWITCH_TIMEOUT - 0.5 < waited < SWITCH_TIMEOUT + 2
    assert _current(a) == _current(b) == SDXL  # DOWN refused at once; A switched


def test_the_peer_token_opens_the_local_options_read_and_nothing_else(replicas):
    a, _ = replicas
    token = {PEER_TOKEN_HEADER: PEER_TOKEN}
    local = {LOCAL_ONLY_HEADER: "1"}
    read = httpx.get(f"{a.url}{OPTIONS}", headers={**token, **local}, timeout=30)
    assert read.status_code == 200 and read.json()["sd_model_checkpoint"] in MODELS
    refused = [
        httpx.get(f"{a.url}{OPTIONS}", headers=token, timeout=30),  # without local-only
        httpx.get(f"{a.url}{OPTIONS}", headers={PEER_TOKEN_HEADER: PEER_TOKEN[:-1] + "x", **local}, timeout=30),
        httpx.post(f"{a.url}{OPTIONS}", headers={**token, **local}, json={"sd_model_checkpoint": SDXL}, timeout=30),
        httpx.get(f"{a.url}/sdapi/v1/sd-models", headers={**token, **local}, timeout=30),
        httpx.post(f"{a.url}/sdapi/v1/txt2img", headers={**token, **local}, json=SMALL, timeout=30),
    ]
    assert [answer.status_code for answer in refused] == [401] * len(refused)
    assert all(b"sd_model_checkpoint" not in answer.content for answer in refused)


def test_a_replica_started_after_the_switch_comes_up_on_the_switched_checkpoint(replicas, cache_dir, secrets, port):
    a, b = replicas
    _reset(a, b)
    assert _select(a, SDXL).status_code == 200 and _current(b) == SDXL
    # C warms up on its default first (as the compiled fast path does), then adopts.
    with peer_replicas([C], port, _resolve, **_settings(cache_dir, secrets, warmup_sizes=["64x64"])) as (c,):
        ready = httpx.get(f"{c.url}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["model"] == SDXL
        warmup = c.server.config.app.state.runtime.warmup
        assert warmup.total > 0 and warmup.done == warmup.total and not warmup.active
        assert _current(c) == SDXL
        assert _model_of(httpx.post(f"{c.url}/sdapi/v1/txt2img", json=SMALL, auth=AUTH, timeout=120))[0] == SDXL


def test_a_replica_that_cannot_read_its_peers_starts_on_the_default(replicas, cache_dir, secrets, port):
    a, b = replicas
    _reset(a, b)
    assert _select(a, SDXL).status_code == 200
    # Its token is not the others': they answer 401, and it starts (on the default) anyway.
    with peer_replicas([C], port, _resolve, **_settings(cache_dir, secrets, token_file="wrong-token")) as (c,):
        assert httpx.get(f"{c.url}/readyz", timeout=10).json()["model"] == TINY
        assert _current(c) == TINY


# -- units -----------------------------------------------------------------------------


def test_the_majority_wins_and_a_tie_keeps_the_default():
    assert majority_checkpoint([], TINY, MODELS) == TINY
    assert majority_checkpoint([SDXL], TINY, MODELS) == SDXL
    assert majority_checkpoint([SDXL, SDXL, TINY], TINY, MODELS) == SDXL
    assert majority_checkpoint([SDXL, TINY], TINY, MODELS) == TINY
    assert majority_checkpoint(["x", "y", SDXL], TINY, [TINY, SDXL, "x", "y"]) == TINY  # three-way tie
    # A name this replica does not offer (a peer of another configuration) does not count.
    assert majority_checkpoint(["other/model", "other/model", SDXL], TINY, MODELS) == SDXL


def test_a_switch_a_peer_forwards_while_this_replica_starts_is_kept_and_wins(cache_dir):
    runtime = Runtime(ServerSettings(model=MODELS, cache_dir=cache_dir, max_loaded_models=2))
    asked: list[str] = []

    class StubPeers(Peers):
        async def fetch(self, peer, method, path, **kwargs):
            asked.append(f"{method} {path} {peer}")
            return json.dumps({"sd_model_checkpoint": TINY}).encode()

    async def dns(name: str) -> list[str]:
        return ["10.0.0.1", "10.0.0.2", "10.0.0.3"]

    peers = StubPeers("10.0.0.1", "peers.example", 8000, max_bytes=1, resolver=dns)
    checkpoint = ReplicaCheckpoint(A1111State(runtime), peers, path=OPTIONS, switch_timeout_seconds=1)
    runtime.before_ready = checkpoint.adopt_from_peers

    async def scenario() -> tuple[str, bool]:
        await runtime.start()
        try:
            # Still loading: a forwarded switch is kept (validated by name), not refused.
            await checkpoint.set_options({"sd_model_checkpoint": SDXL}, authorization=None, local_only=True)
            with pytest.raises(InvalidInput, match="sd_model_checkpoint"):
                await checkpoint.set_options({"sd_model_checkpoint": "nope"}, authorization=None, local_only=True)
            for _ in range(600):
                if runtime.readiness()[0]:
                    break
                await asyncio.sleep(0.1)
            return runtime.current_model, runtime.readiness()[0]
        finally:
            await runtime.stop()

    # Both peers say tiny, but the switch it was told of is newer than what they said.
    assert asyncio.run(scenario()) == (SDXL, True)
    assert sorted(asked) == [f"GET {OPTIONS} 10.0.0.2", f"GET {OPTIONS} 10.0.0.3"]
