"""OpenAI url image links behind several replicas (service/peers.py): two real servers,
A on 127.0.0.1 and B on 127.0.0.2 (the same port, as pods share a container port), with
auth on, whose `--peers` name resolves (a fake resolver, standing in for the headless
Service's DNS) to them and to a few fake replicas on other loopback addresses."""

from __future__ import annotations

import asyncio
import base64
import io
import secrets
import socket
import time

import httpx
import openai
import pytest
from PIL import Image

from inference.service.history import ImageUrlStore
from inference.service.peers import FETCH_TIMEOUT_SECONDS, LOCAL_ONLY_HEADER, Peers, encode_owner, owner_of

from .peer_fixtures import PEERS_NAME, FakePeer, port_free_on_every_address, write_htpasswd
from .peer_fixtures import replicas as peer_replicas
from .server import ThreadedServer

PASSWORD = "peer-test-pass"
AUTH = ("admin", PASSWORD)
A, B = "127.0.0.1", "127.0.0.2"
BROKEN = "127.0.0.3"  # a listed replica that closes the connection without an answer
STRANGER = "127.0.0.4"  # listening, but not a replica: the peers' name does not resolve to it
DOWN = "127.0.0.5"  # a listed replica with nothing listening
HANGING = "127.0.0.6"  # a listed replica that accepts and never answers
PEER_SET = [A, B, BROKEN, DOWN, HANGING]
UNKNOWN_BODY = {
    "error": {"message": "this image link is unknown or has expired", "type": "invalid_request_error", "param": None,
              "code": None}
}


@pytest.fixture(scope="module")
def port() -> int:
    return port_free_on_every_address([A, B, BROKEN, STRANGER, DOWN, HANGING])


@pytest.fixture(scope="module")
def resolutions() -> list[str]:
    """The names the servers looked up."""
    return []


@pytest.fixture(scope="module")
def replicas(cache_dir, tmp_path_factory, port, resolutions):
    htpasswd = tmp_path_factory.mktemp("peers-auth") / "htpasswd"
    write_htpasswd(htpasswd, PASSWORD)

    def resolve(name: str) -> list[str]:
        resolutions.append(name)
        return list(PEER_SET) if name == PEERS_NAME else []

    with peer_replicas([A, B], port, resolve, cache_dir=cache_dir, auth_file=htpasswd) as (a, b):
        yield a, b


@pytest.fixture(scope="module")
def link_on_a(replicas) -> str:
    """A url link made by the official `openai` client on A (user:password as its key)."""
    a, _ = replicas
    client = openai.OpenAI(base_url=f"{a.url}/v1", api_key=f"admin:{PASSWORD}", max_retries=0, timeout=60)
    result = client.images.generate(prompt="a lighthouse", size="64x64", response_format="url", extra_body={"steps": 2})
    return result.data[0].url


def _on(server: ThreadedServer, link: str) -> str:
    """The same link, asked of another replica (what the Service does to half of them)."""
    return server.url + link[link.index("/v1/"):]


def _id_owned_by(address: str) -> str:
    return f"{secrets.token_urlsafe(18)}.{encode_owner(address)}"


def test_a_link_made_on_one_replica_is_served_by_the_other(replicas, link_on_a):
    a, b = replicas
    assert link_on_a.startswith(a.url + "/v1/images/files/")
    image_id = link_on_a.rsplit("/", 1)[1].removesuffix(".png")
    assert str(owner_of(image_id)) == A
    from_a = httpx.get(link_on_a, auth=AUTH)
    from_b = httpx.get(_on(b, link_on_a), auth=AUTH, timeout=10)
    assert from_a.status_code == 200 and from_b.status_code == 200, from_b.text
    assert from_b.content == from_a.content
    assert Image.open(io.BytesIO(from_b.content)).size == (64, 64)
    for header in ("content-type", "cache-control"):
        assert from_b.headers[header] == from_a.headers[header]


def test_wrong_or_missing_credentials_get_401_not_the_image(replicas, link_on_a):
    _, b = replicas
    for auth in (("admin", "wrong"), None):
        answer = httpx.get(_on(b, link_on_a), auth=auth, timeout=10)
        assert answer.status_code == 401 and not answer.content.startswith(b"\x89PNG")


def test_the_local_only_header_stops_a_replica_from_asking_its_peers(replicas, link_on_a):
    _, b = replicas
    answer = httpx.get(_on(b, link_on_a), auth=AUTH, headers={LOCAL_ONLY_HEADER: "1"}, timeout=10)
    assert answer.status_code == 404 and answer.json() == UNKNOWN_BODY


def test_the_fetch_carries_the_clients_credentials_and_the_local_only_header(replicas, port):
    _, b = replicas
    with FakePeer(BROKEN, port) as broken:
        image_id = _id_owned_by(BROKEN)
        answer = httpx.get(f"{b.url}/v1/images/files/{image_id}.png", auth=AUTH, timeout=10)
    assert answer.status_code == 404 and answer.json() == UNKNOWN_BODY
    (request,) = broken.requests
    head = request.decode("latin-1").lower()
    assert head.startswith(f"get /v1/images/files/{image_id.lower()}.png http/1.1\r\n")
    assert f"{LOCAL_ONLY_HEADER}: 1\r\n" in head
    expected = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    assert f"\r\nAuthorization: {expected}\r\n" in request.decode("latin-1")


def test_an_owner_that_is_not_a_replica_is_never_contacted(replicas, port, resolutions):
    _, b = replicas
    with FakePeer(STRANGER, port) as stranger:
        answer = httpx.get(f"{b.url}/v1/images/files/{_id_owned_by(STRANGER)}.png", auth=AUTH, timeout=10)
    assert answer.status_code == 404 and answer.json() == UNKNOWN_BODY
    assert stranger.requests == [], "a client-written address must not be connected to"
    assert resolutions and set(resolutions) == {PEERS_NAME}


def test_a_replica_that_is_down_or_silent_is_404_within_the_timeout(replicas, port):
    _, b = replicas
    started = time.monotonic()
    down = httpx.get(f"{b.url}/v1/images/files/{_id_owned_by(DOWN)}.png", auth=AUTH, timeout=10)
    assert down.status_code == 404 and down.json() == UNKNOWN_BODY
    assert time.monotonic() - started < FETCH_TIMEOUT_SECONDS
    with FakePeer(HANGING, port, reply=None) as hanging:
        started = time.monotonic()
        silent = httpx.get(f"{b.url}/v1/images/files/{_id_owned_by(HANGING)}.png", auth=AUTH, timeout=30)
        waited = time.monotonic() - started
    assert silent.status_code == 404 and silent.json() == UNKNOWN_BODY
    assert len(hanging.requests) == 1
    assert FETCH_TIMEOUT_SECONDS - 0.5 < waited < FETCH_TIMEOUT_SECONDS + 2


def test_a_replica_still_answers_its_own_links_and_unknown_ids(replicas, link_on_a):
    a, b = replicas
    for bad in ("nonsense", _id_owned_by(A), _id_owned_by(B), "x" * 24 + ".AAAAAAAAAAAAAAAAAAAAAA"):
        for server in (a, b):
            answer = httpx.get(f"{server.url}/v1/images/files/{bad}.png", auth=AUTH, timeout=10)
            assert answer.status_code == 404 and answer.json() == UNKNOWN_BODY, (bad, server.url)


# -- units -----------------------------------------------------------------------------


def test_ids_name_their_owner_only_with_peers_configured():
    plain = ImageUrlStore(4, 60).put(b"png")
    assert "." not in plain and len(plain) == 24 and owner_of(plain) is None
    for address in ("10.1.2.3", "fd00::1:2"):
        image_id = ImageUrlStore(4, 60, owner_tag=encode_owner(address)).put(b"png")
        assert str(owner_of(image_id)) == address
    for bad in ("abc.AAAAAA", "x" * 24 + ".AAAAA", "x" * 24 + ".AAAAAB", "x" * 24 + "./////A", "x" * 24 + ".AAAAAA.png"):
        assert owner_of(bad) is None, bad


def test_peer_resolution_is_cached_and_a_dns_failure_is_an_empty_set():
    calls = []
    now = [0.0]

    async def flaky(name: str) -> list[str]:
        calls.append(name)
        if len(calls) == 2:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return ["10.0.0.1", "10.0.0.2", "not-an-address"]

    peers = Peers("10.0.0.1", "peers.example", 8000, max_bytes=1024, resolver=flaky, cache_seconds=5, clock=lambda: now[0])

    async def scenario():
        first = await peers.members()
        again = await peers.members()
        now[0] = 6
        failed = await peers.members()
        return first, again, failed

    first, again, failed = asyncio.run(scenario())
    assert {str(a) for a in first} == {"10.0.0.1", "10.0.0.2"} and again == first
    assert failed == frozenset() and len(calls) == 2


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--peers", "sd-peers.ns.svc"], "--advertise-address / SD_ADVERTISE_ADDRESS go together"),
        (["--advertise-address", "10.0.0.1"], "--peers / SD_PEERS and"),
        (["--advertise-address", "pod-a", "--peers", "sd-peers.ns.svc"], "error: --advertise-address / SD_ADVERTISE_ADDRESS"),
        (["--advertise-address", "10.0.0.1", "--peers", "http://sd-peers"], "error: --peers / SD_PEERS: "),
    ],
)
def test_peer_settings_errors_name_the_setting(argv, named, capsys):
    from inference.__main__ import parse

    with pytest.raises(SystemExit):
        parse(["serve", *argv], {})
    assert named in capsys.readouterr().err
