"""A1111's progress, interrupt and skip behind several replicas (service/replica_progress.py):
two real servers, A on 127.0.0.1 and B on 127.0.0.2 (the same port, as pods share a
container port), every denoising step slowed (conftest.slow_steps) so a job is seen
running, with auth on; their `--peers` name resolves (a fake resolver) to them, to LISTENER
(where tests put a FakePeer) and to DOWN (nothing listens)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time

import httpx
import pytest

from inference.config import ServerSettings
from inference.service.options import A1111State
from inference.service.peers import LOCAL_ONLY_HEADER, Peers
from inference.service.replica_progress import PEER_CONTROL_TIMEOUT_SECONDS, ReplicaProgress
from inference.service.runtime import Runtime

from .conftest import info_of, slow_steps
from .peer_fixtures import PEERS_NAME, FakePeer, port_free_on_every_address, write_htpasswd
from .peer_fixtures import replicas as peer_replicas

PASSWORD = "progress-test-pass"
AUTH = ("admin", PASSWORD)
A, B = "127.0.0.1", "127.0.0.2"
LISTENER = "127.0.0.3"
DOWN = "127.0.0.5"
PROGRESS, INTERRUPT, SKIP = "/sdapi/v1/progress", "/sdapi/v1/interrupt", "/sdapi/v1/skip"
LOCAL = {LOCAL_ONLY_HEADER: "1"}
LONG = {"prompt": "a long one", "seed": 8, "batch_size": 2, "width": 64, "height": 64, "steps": 40}


@pytest.fixture(scope="module")
def port() -> int:
    return port_free_on_every_address([A, B, LISTENER, DOWN])


@pytest.fixture(scope="module")
def replicas(cache_dir, tmp_path_factory, port):
    htpasswd = tmp_path_factory.mktemp("progress-auth") / "htpasswd"
    write_htpasswd(htpasswd, PASSWORD)

    def resolve(name: str) -> list[str]:
        return [A, B, LISTENER, DOWN] if name == PEERS_NAME else []

    with peer_replicas([A, B], port, resolve, wrap_runner=slow_steps, cache_dir=cache_dir, auth_file=htpasswd,
                       max_width=256, max_height=256) as (a, b):
        yield a, b


def _progress(server, headers=None, auth=AUTH) -> dict:
    answer = httpx.get(f"{server.url}{PROGRESS}", auth=auth, headers=headers or {}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _start(server, body: dict) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def call():
        outcome["response"] = httpx.post(f"{server.url}/sdapi/v1/txt2img", json=body, auth=AUTH, timeout=120)

    thread = threading.Thread(target=call)
    thread.start()
    return thread, outcome


def _wait_for_step(server, step: int) -> dict:
    """The progress `server` reports of its own job (local-only) once it reached `step`."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        progress = _progress(server, LOCAL)
        if progress["state"]["sampling_step"] >= step:
            return progress
        time.sleep(0.05)
    raise AssertionError(f"the generation never reached step {step}")


def _finish(server, thread: threading.Thread) -> None:
    """Stops `server`'s own job (nothing forwarded) and waits for its request."""
    httpx.post(f"{server.url}{INTERRUPT}", auth=AUTH, headers=LOCAL, timeout=30)
    thread.join(60)


def test_a_job_running_on_a_shows_in_the_progress_polled_on_b(replicas):
    a, b = replicas
    thread, _ = _start(a, LONG)
    try:
        on_a = _wait_for_step(a, 3)
        on_b = _progress(b)
        assert on_b["state"]["job"] == "generate"
        assert on_b["state"]["sampling_steps"] == 40 and on_b["state"]["sampling_step"] >= 3
        assert on_b["state"]["job_timestamp"] == on_a["state"]["job_timestamp"]
        assert on_b["progress"] > 0 and on_b["textinfo"].startswith("Step ")
        # B's own view stays idle: the job is A's.
        assert _progress(b, LOCAL)["state"]["sampling_steps"] == 0
    finally:
        _finish(a, thread)


def test_interrupt_sent_to_b_stops_the_job_running_on_a(replicas):
    a, b = replicas
    thread, outcome = _start(a, LONG)
    try:
        _wait_for_step(a, 3)
        assert httpx.post(f"{b.url}{INTERRUPT}", auth=AUTH, timeout=30).json() == {}
        thread.join(30)
    finally:
        _finish(a, thread)
    response = outcome["response"]
    assert response.status_code == 200, response.text
    info = info_of(response)
    assert info["interrupted"] is True and info["all_seeds"] == [8, 9]
    # Polled on idle B, the flag of A's last job shows, as A1111's one process reports it.
    assert _progress(b)["state"]["interrupted"] is True
    assert _progress(b, LOCAL)["state"]["interrupted"] is False


def test_skip_sent_to_b_skips_the_batch_running_on_a(replicas):
    a, b = replicas
    body = {"prompt": "skip me", "seed": 20, "batch_size": 4, "n_iter": 2, "width": 64, "height": 64, "steps": 20}
    thread, outcome = _start(a, body)
    state_of_a = a.server.config.app.state.a1111
    try:
        running = _wait_for_step(a, 2)
        assert httpx.post(f"{b.url}{SKIP}", auth=AUTH, timeout=30).json() is None
        # A marked its running batch skipped (A1111's flag) before B answered.
        skipped = state_of_a.skipped_batch
        assert skipped is not None
        assert time.strftime("%Y%m%d%H%M%S", time.localtime(skipped)) == running["state"]["job_timestamp"]
        thread.join(60)
    finally:
        _finish(a, thread)
    response = outcome["response"]
    assert response.status_code == 200, response.text
    info = info_of(response)
    assert not info.get("interrupted") and info["all_seeds"] == list(range(20, 28))  # the next batch still ran
    assert len(response.json()["images"]) == 8


def test_requests_reach_the_peers_with_the_local_only_header_and_the_clients_credentials(replicas, port):
    _, b = replicas
    with FakePeer(LISTENER, port) as listener:
        assert _progress(b)["state"]["job"] == ""
        assert httpx.post(f"{b.url}{INTERRUPT}", auth=AUTH, timeout=30).json() == {}
        assert httpx.post(f"{b.url}{SKIP}", auth=AUTH, timeout=30).json() is None
    heads = [request.decode("latin-1") for request in listener.requests]
    assert [head.split("\r\n", 1)[0] for head in heads] == [
        f"GET {PROGRESS} HTTP/1.1", f"POST {INTERRUPT} HTTP/1.1", f"POST {SKIP} HTTP/1.1",
    ]
    expected = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    for head in heads:
        assert f"\r\n{LOCAL_ONLY_HEADER}: 1\r\n" in head.lower()
        assert f"\r\nAuthorization: {expected}\r\n" in head


def test_local_only_requests_and_a_busy_replicas_progress_ask_no_peer(replicas, port):
    a, b = replicas
    with FakePeer(LISTENER, port) as listener:
        assert _progress(b, LOCAL)["state"]["job"] == ""
        assert httpx.post(f"{b.url}{INTERRUPT}", auth=AUTH, headers=LOCAL, timeout=30).json() == {}
        assert httpx.post(f"{b.url}{SKIP}", auth=AUTH, headers=LOCAL, timeout=30).json() is None
        thread, _ = _start(a, LONG)
        try:
            _wait_for_step(a, 2)
            assert _progress(a)["state"]["job"] == "generate"  # A runs a job: its own answer, at once
        finally:
            _finish(a, thread)
    assert listener.requests == []


def test_wrong_credentials_are_a_401_and_nothing_is_forwarded(replicas, port):
    _, b = replicas
    with FakePeer(LISTENER, port) as listener:
        answers = [
            request(f"{b.url}{path}", auth=auth, timeout=30)
            for auth in (("admin", "wrong"), None)
            for request, path in ((httpx.get, PROGRESS), (httpx.post, INTERRUPT), (httpx.post, SKIP))
        ]
    assert [answer.status_code for answer in answers] == [401] * 6
    assert all(b"sampling_step" not in answer.content for answer in answers)
    assert listener.requests == []


def test_a_hung_peer_holds_a_poll_no_longer_than_the_bound(replicas, port):
    _, b = replicas
    with FakePeer(LISTENER, port, reply=None) as hanging:
        for call in (lambda: _progress(b), lambda: httpx.post(f"{b.url}{INTERRUPT}", auth=AUTH, timeout=30).json()):
            started = time.monotonic()
            answer = call()
            waited = time.monotonic() - started
            assert answer == {} or answer["state"]["job"] == ""
            assert PEER_CONTROL_TIMEOUT_SECONDS - 0.3 < waited < PEER_CONTROL_TIMEOUT_SECONDS + 1.5
    assert len(hanging.requests) == 2


# -- units -----------------------------------------------------------------------------


def _answer(timestamp: str = "0", step: int = 0, *, job: str = "", interrupted: bool = False) -> bytes:
    return json.dumps({
        "progress": step / 10, "eta_relative": 1.0, "current_image": None, "textinfo": None,
        "state": {"job": job, "job_timestamp": timestamp, "sampling_step": step, "sampling_steps": 10 if job else 0,
                  "interrupted": interrupted, "skipped": False},
    }).encode()


def _progress_over(cache_dir, answers: dict[str, bytes | None]) -> dict:
    """What an idle replica (10.0.0.1) answers to a progress poll when each peer answers as given."""

    class StubPeers(Peers):
        async def fetch(self, peer, method, path, **kwargs):
            return answers[str(peer)]

    async def dns(name: str) -> list[str]:
        return ["10.0.0.1", *answers]

    peers = StubPeers("10.0.0.1", "peers.example", 8000, max_bytes=1, resolver=dns)
    state = A1111State(Runtime(ServerSettings(model="builtin:tiny", cache_dir=cache_dir)))
    control = ReplicaProgress(state, peers, progress_path=PROGRESS, interrupt_path=INTERRUPT, skip_path=SKIP)
    return asyncio.run(control.progress(authorization=None, local_only=False)).model_dump()


def test_the_peer_whose_job_started_first_is_reported_and_bad_answers_are_skipped(cache_dir):
    answers = {
        "10.0.0.2": _answer("20260101120005", 7, job="generate"),
        "10.0.0.3": _answer("20260101120003", 2, job="generate"),
        "10.0.0.4": _answer(interrupted=True),
        "10.0.0.5": None,  # failed
        "10.0.0.6": b'{"progress": "many"}',
        "10.0.0.7": _answer("yesterday", 9, job="generate"),  # no job_timestamp: not comparable
    }
    chosen = _progress_over(cache_dir, answers)
    assert (chosen["state"]["job_timestamp"], chosen["state"]["sampling_step"]) == ("20260101120003", 2)
    # Two jobs started in the same second: the first peer by address.
    tie = _progress_over(cache_dir, {"10.0.0.3": _answer("20260101120003", 4, job="generate"),
                                     "10.0.0.2": _answer("20260101120003", 6, job="generate")})
    assert tie["state"]["sampling_step"] == 6


def test_with_no_peer_running_the_answer_is_idle_with_the_peers_flags(cache_dir):
    idle = _progress_over(cache_dir, {"10.0.0.2": _answer(), "10.0.0.3": _answer(interrupted=True)})
    assert idle["state"]["job"] == "" and idle["state"]["sampling_steps"] == 0 and idle["progress"] == 0
    assert idle["state"]["interrupted"] is True and idle["state"]["skipped"] is False
    assert _progress_over(cache_dir, {"10.0.0.2": _answer()})["state"]["interrupted"] is False
