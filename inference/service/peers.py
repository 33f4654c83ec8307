"""Replicas serving each other's OpenAI `response_format: url` images.

An image link is kept in the memory of the replica that made it (`ImageUrlStore`), but
the Service in front of several replicas sends a link's GET to any of them. With
`--advertise-address` (this replica's IP) and `--peers` (a DNS name that resolves to
every replica's IP: a headless Service), an image id names its owner:
`<random token>.<owner>`, the owner being its IP address's packed bytes in URL-safe
base64. A replica asked for an id it does not hold fetches it from the owner, over the
same API port with the client's own `Authorization` header (the owner checks it against
the same htpasswd file) and `LOCAL_ONLY_HEADER`, which makes the owner answer from its
own store only, so a request is never passed on twice.

The owner is only ever fetched from when the peers' DNS name resolves to it: an id is
written by the client, and this server must not be made to connect to any address a
client chooses. Every failure (owner unknown, unreachable, slow, answering anything but
a PNG) is "no such image" to the caller, never an error of its own: the fetch is bounded
in time (`timeout_seconds` in all) and in size (`max_bytes`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable

from .history import ImageUrlStore

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# name -> the addresses it resolves to (as text); replaced in tests.
PeerResolver = Callable[[str], Awaitable[list[str]]]

# Sent by a replica that fetches from its peer; the peer then answers from its own store
# only. A client may send it too: it then gets what this replica holds, nothing more.
LOCAL_ONLY_HEADER = "x-sd-local-only"
FETCH_TIMEOUT_SECONDS = 3.0
# How long one resolution of the peers' name is used (new replicas appear in the
# headless Service's DNS within this, long before they are ready for traffic).
RESOLVE_CACHE_SECONDS = 5.0
# The owner part of an id: 4 (IPv4) or 16 (IPv6) bytes, unpadded URL-safe base64.
_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}\.([A-Za-z0-9_-]{6}|[A-Za-z0-9_-]{22})$")


def encode_owner(address: str) -> str:
    return _encode_packed(ipaddress.ip_address(address).packed)


def _encode_packed(packed: bytes) -> str:
    return base64.urlsafe_b64encode(packed).rstrip(b"=").decode("ascii")


def owner_of(image_id: str) -> IPAddress | None:
    """The owner an id names, or None when it names none (or is not an id at all)."""
    match = _ID.match(image_id)
    if match is None:
        return None
    tag = match[1]
    try:
        packed = base64.urlsafe_b64decode(tag + "=" * (-len(tag) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(packed) not in (4, 16) or _encode_packed(packed) != tag:  # one spelling per address
        return None
    return ipaddress.ip_address(packed)


async def resolve_with_dns(name: str) -> list[str]:
    """The addresses `name` resolves to, looked up without blocking the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 scope is no part of the address
    except ValueError:
        return None


class Peers:
    """The other replicas, as the peers' DNS name says, and fetching an image from one."""

    def __init__(
        self,
        own_address: str,
        peers_name: str,
        port: int,
        *,
        max_bytes: int,
        resolver: PeerResolver = resolve_with_dns,
        timeout_seconds: float = FETCH_TIMEOUT_SECONDS,
        cache_seconds: float = RESOLVE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.own_address = ipaddress.ip_address(own_address)
        self.peers_name = peers_name
        self.port = port
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds
        self._resolver = resolver
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._members: frozenset[IPAddress] = frozenset()
        self._members_until = float("-inf")
        self._resolving: asyncio.Lock | None = None

    @property
    def owner_tag(self) -> str:
        return encode_owner(str(self.own_address))

    async def members(self) -> frozenset[IPAddress]:
        """Every replica's address (this one's included), resolved at most once per
        `cache_seconds`; empty while the name does not resolve."""
        if self._clock() < self._members_until:
            return self._members
        if self._resolving is None:
            self._resolving = asyncio.Lock()
        async with self._resolving:  # one lookup at a time; the others use its answer
            if self._clock() < self._members_until:
                return self._members
            try:
                found = await asyncio.wait_for(self._resolver(self.peers_name), self.timeout_seconds)
            except (OSError, TimeoutError) as error:
                logger.warning("peers: %s does not resolve (%s); images of other replicas are not reachable",
                               self.peers_name, error or type(error).__name__)
                found = []
            self._members = frozenset(a for a in map(_address, found) if a is not None)
            self._members_until = self._clock() + self._cache_seconds
        return self._members

    async def fetch_image(self, image_id: str, path: str, authorization: str | None) -> bytes | None:
        """The PNG of an id another replica owns, fetched from that replica at `path`;
        None when the id names no peer (this replica, or an address the peers' name does
        not resolve to: nothing is fetched then) or the peer does not give it."""
        owner = owner_of(image_id)
        if owner is None or owner == self.own_address:
            return None
        if owner not in await self.members():
            logger.info("peers: image link names %s, which is not a replica of %s; not fetched", owner, self.peers_name)
            return None
        if authorization is not None and ("\r" in authorization or "\n" in authorization):
            return None
        # Imported here: only a replica with peers ever fetches (and the GPU benchmark's
        # machine, which runs the server without peers, has no httpx2).
        import httpx2

        try:
            return await asyncio.wait_for(self._get(httpx2, owner, path, authorization), self.timeout_seconds)
        except (OSError, TimeoutError, ValueError, httpx2.HTTPError) as error:
            logger.warning("peers: image from %s not fetched: %s", owner, error or type(error).__name__)
            return None

    async def _get(self, httpx2, owner: IPAddress, path: str, authorization: str | None) -> bytes | None:
        host = f"[{owner}]" if owner.version == 6 else str(owner)
        headers = {LOCAL_ONLY_HEADER: "1", "Accept-Encoding": "identity"}  # the PNG as stored
        if authorization is not None:
            headers["Authorization"] = authorization
        # trust_env=False: a cluster's HTTP(S)_PROXY must not carry pod-to-pod traffic.
        async with httpx2.AsyncClient(trust_env=False, follow_redirects=False, timeout=self.timeout_seconds) as client:
            async with client.stream("GET", f"http://{host}:{self.port}{path}", headers=headers) as response:
                if response.status_code != 200:
                    logger.info("peers: %s answered %d for an image link", owner, response.status_code)
                    return None
                length = response.headers.get("content-length", "")
                if response.headers.get("content-type") != "image/png" or not length.isdigit():
                    raise ValueError("the answer is not a PNG of known length")
                if int(length) > self.max_bytes:
                    raise ValueError(f"the image is larger than {self.max_bytes} bytes")
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > int(length):
                        raise ValueError("the answer is longer than its Content-Length")
                return bytes(body) if body.startswith(b"\x89PNG\r\n\x1a\n") else None


class ImageLinks:
    """The images behind OpenAI url links: this replica's store, then the owner's."""

    def __init__(self, store: ImageUrlStore, peers: Peers | None = None):
        self.store = store
        self.peers = peers

    @property
    def ttl_seconds(self) -> float:
        return self.store.ttl_seconds

    def put_base64(self, image_b64: str) -> str:
        return self.store.put_base64(image_b64)

    async def find(self, image_id: str, path: str, *, authorization: str | None, local_only: bool) -> bytes | None:
        """The PNG of `image_id`, or None. `path` is where a peer serves it;
        `authorization` the client's header, passed on to the peer."""
        png = self.store.get(image_id)
        if png is not None or local_only or self.peers is None:
            return png
        return await self.peers.fetch_image(image_id, path, authorization)
