"""StableStudio's history behind several replicas (service/peers.py, `ReplicaHistory`):
two real servers, A on 127.0.0.1 and B on 127.0.0.2 (the same port, as pods share a
container port), with auth on, whose `--peers` name resolves (a fake resolver, standing in
for the headless Service's DNS) to them and to fake replicas on other loopback addresses,
which refuse the connection unless a test listens there."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time

import httpx
import pytest

from inference.infotext import parse_infotext
from inference.service.history import GenerationHistory, HistoryEntry
from inference.service.peers import FETCH_TIMEOUT_SECONDS, LOCAL_ONLY_HEADER, Peers, ReplicaHistory, encode_owner

from .conftest import decode_png
from .peer_fixtures import PEERS_NAME, FakePeer, port_free_on_every_address, write_htpasswd
from .peer_fixtures import replicas as peer_replicas
from .server import ThreadedServer

PASSWORD = "history-test-pass"
AUTH = ("admin", PASSWORD)
A, B = "127.0.0.1", "127.0.0.2"
LISTENER = "127.0.0.3"  # a listed replica; tests listen there with a FakePeer
DOWN = "127.0.0.5"  # a listed replica with nothing listening
HISTORY_SIZE = 4
ROUTE = "/StableStudio/get-generated-images"
# (server, seed), oldest first: both replicas count from 00001.
SAVED = [(A, 11), (B, 22), (A, 33), (B, 44)]


@pytest.fixture(scope="module")
def port() -> int:
    return port_free_on_every_address([A, B, LISTENER, DOWN])


@pytest.fixture(scope="module")
def replicas(cache_dir, tmp_path_factory, port):
    htpasswd = tmp_path_factory.mktemp("history-auth") / "htpasswd"
    write_htpasswd(htpasswd, PASSWORD)

    def resolve(name: str) -> list[str]:
        return [A, B, LISTENER, DOWN] if name == PEERS_NAME else []

    with peer_replicas([A, B], port, resolve, cache_dir=cache_dir, auth_file=htpasswd, history_size=HISTORY_SIZE,
                       max_width=256, max_height=256) as (a, b):
        by_address = {A: a, B: b}
        for address, seed in SAVED:
            answer = httpx.post(
                f"{by_address[address].url}/sdapi/v1/txt2img", auth=AUTH, timeout=60,
                json={"prompt": f"saved {seed}", "seed": seed, "steps": 2, "width": 64, "height": 64, "save_images": True},
            )
            assert answer.status_code == 200, answer.text
            time.sleep(0.01)  # distinct create_date even on a coarse clock
        yield a, b


def _history(server: ThreadedServer, limit: int | None = None, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}{ROUTE}", json={"limit": limit}, auth=kwargs.pop("auth", AUTH), timeout=30, **kwargs)


def _seeds(entries: list[dict]) -> list[int]:
    return [int(entry["image_name"].split("-")[1]) for entry in entries]


def test_either_replica_lists_both_replicas_images_newest_first(replicas):
    for server in replicas:
        answer = _history(server, limit=10)
        assert answer.status_code == 200, answer.text
        entries = answer.json()
        assert _seeds(entries) == [44, 33, 22, 11], server.url
        dates = [entry["create_date"] for entry in entries]
        assert dates == sorted(dates, reverse=True)
        for entry in entries:
            prompt = parse_infotext(decode_png(entry["content"]).text["parameters"])["Prompt"]
            assert prompt == f"saved {entry['image_name'].split('-')[1]}"
            assert (entry["width"], entry["height"]) == (64, 64)


def test_the_merged_history_is_cut_to_the_limit(replicas):
    _, b = replicas
    assert _seeds(_history(b, limit=3).json()) == [44, 33, 22]
    assert _seeds(_history(b, limit=1).json()) == [44]
    assert _history(b, limit=0).json() == []
    # Without a limit: as many as one replica keeps, the newest across all.
    assert _seeds(_history(b).json()) == [44, 33, 22, 11]


def test_names_are_unique_across_replicas_and_read_like_a1111s(replicas):
    a, _ = replicas
    entries = _history(a, limit=10).json()
    names = [entry["image_name"] for entry in entries]
    assert len(set(names)) == len(names) == 4
    owner = {11: A, 22: B, 33: A, 44: B}
    for name, seed in zip(names, _seeds(entries), strict=True):
        assert re.fullmatch(rf"\d{{5}}-{seed}-[0-9a-f]{{6}}-{re.escape(encode_owner(owner[seed]))}\.png", name), name
    # Both replicas count from 1: without the owner tag, 00001-... would be on each.
    assert sorted(name[:5] for name in names) == ["00001", "00001", "00002", "00002"]


def test_the_local_only_header_lists_only_the_replicas_own_images(replicas):
    a, b = replicas
    assert _seeds(_history(a, limit=10, headers={LOCAL_ONLY_HEADER: "1"}).json()) == [33, 11]
    assert _seeds(_history(b, limit=10, headers={LOCAL_ONLY_HEADER: "1"}).json()) == [44, 22]


def test_wrong_or_missing_credentials_get_401_not_the_history(replicas):
    _, b = replicas
    for auth in (("admin", "wrong"), None):
        answer = _history(b, limit=10, auth=auth)
        assert answer.status_code == 401 and b"image_name" not in answer.content


def test_a_peer_is_asked_with_the_clients_credentials_and_the_local_only_header(replicas, port):
    _, b = replicas
    with FakePeer(LISTENER, port) as listener:  # closes without an answer: its part is missing
        answer = _history(b, limit=3)
    assert answer.status_code == 200 and _seeds(answer.json()) == [44, 33, 22]
    (request,) = listener.requests
    head = request.decode("latin-1")
    assert head.lower().startswith(f"post {ROUTE.lower()} http/1.1\r\n")
    assert f"\r\n{LOCAL_ONLY_HEADER}: 1\r\n" in head.lower()
    expected = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    assert f"\r\nAuthorization: {expected}\r\n" in head
    assert "\r\ncontent-type: application/json\r\n" in head.lower()


def test_a_hung_peer_does_not_hold_the_answer_past_the_timeout(replicas, port):
    _, b = replicas
    expected = _history(b, limit=10).json()
    with FakePeer(LISTENER, port, reply=None) as hanging:
        started = time.monotonic()
        answer = _history(b, limit=10)
        waited = time.monotonic() - started
    assert answer.status_code == 200 and answer.json() == expected
    assert len(hanging.requests) == 1
    assert FETCH_TIMEOUT_SECONDS - 0.5 < waited < FETCH_TIMEOUT_SECONDS + 1.5


def test_a_peer_answer_larger_than_the_bound_is_dropped(replicas, port):
    _, b = replicas
    # An entry B has not: used when the answer is within the bound, dropped when it is not.
    entry = {"image_name": "00001-7-x.png", "create_date": time.time() + 60, "content": "AA==", "width": 64, "height": 64}
    body = json.dumps([entry]).encode()
    small = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    # B keeps 4 entries of at most 256 x 256 (base64 PNG); a peer may send 3 of them for limit 3.
    huge_length = 3 * 8 * 1024 * 1024
    huge = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (huge_length, body)
    for reply, seeds in ((small, [7, 44, 33]), (huge, [44, 33, 22])):
        with FakePeer(LISTENER, port, reply=reply):
            answer = _history(b, limit=3)
        assert answer.status_code == 200 and _seeds(answer.json()) == seeds


# -- units -----------------------------------------------------------------------------


def test_without_peers_names_and_answers_are_as_before():
    history = GenerationHistory(3, instance="a1b2c3")
    history.add(["a", "b"], [5, 6], 64, 64)
    replica = ReplicaHistory(history)
    entries = asyncio.run(replica.recent(None, ROUTE, authorization=None, local_only=False))
    assert [entry.image_name for entry in entries] == ["00002-6-a1b2c3.png", "00001-5-a1b2c3.png"]


def test_a_restarted_server_never_gives_a_new_image_an_earlier_ones_name():
    """StableStudio keys images by name; a fixed seed (42) after a restart, which counts
    from 1 again, must not reuse the name of the image the browser already holds."""
    before, after = GenerationHistory(3), GenerationHistory(3)  # two processes
    before.add(["first"], [42], 64, 64)
    after.add(["second"], [42], 64, 64)
    old, new = before.recent()[0].image_name, after.recent()[0].image_name
    assert old.startswith("00001-42-") and new.startswith("00001-42-")
    assert old != new


def test_peer_entries_are_merged_by_date_deduplicated_and_malformed_answers_dropped():
    own = GenerationHistory(4, owner_tag="own", instance="i")
    own.add(["o"], [1], 64, 64)
    now = own.recent()[0].create_date
    answers = {
        "10.0.0.2": json.dumps([
            {"image_name": "00001-2-p.png", "create_date": now + 2, "content": "x", "width": 8, "height": 8},
            {"image_name": "00002-3-p.png", "create_date": now - 2, "content": "x", "width": 8, "height": 8},
        ]).encode(),
        "10.0.0.3": json.dumps([{"image_name": "00001-4-q.png", "create_date": "soon", "content": "x",
                                 "width": 8, "height": 8}]).encode(),
        "10.0.0.4": json.dumps([
            {"image_name": "00001-2-p.png", "create_date": now + 1, "content": "y", "width": 8, "height": 8},
        ]).encode(),
    }

    class StubPeers(Peers):
        async def fetch(self, peer, method, path, **kwargs):
            assert (method, path, kwargs["json_body"]) == ("POST", ROUTE, {"limit": 3})
            return answers[str(peer)]

    async def dns(name: str) -> list[str]:
        return ["10.0.0.1", *answers]

    peers = StubPeers("10.0.0.1", "peers.example", 8000, max_bytes=1, resolver=dns)
    replica = ReplicaHistory(own, peers, max_entry_bytes=100)
    entries = asyncio.run(replica.recent(3, ROUTE, authorization=None, local_only=False))
    assert entries == [
        HistoryEntry("00001-2-p.png", now + 2, "x", 8, 8),
        HistoryEntry("00001-1-i-own.png", now, "o", 64, 64),
        HistoryEntry("00002-3-p.png", now - 2, "x", 8, 8),
    ]
    local = asyncio.run(replica.recent(3, ROUTE, authorization=None, local_only=True))
    assert [entry.image_name for entry in local] == ["00001-1-i-own.png"]
