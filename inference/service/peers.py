"""Replicas serving each other's OpenAI `response_format: url` images and StableStudio
history.

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

StableStudio's history (`ReplicaHistory`) is kept per replica too: with peers, the route
asks every other replica the peers' name resolves to for its own entries (the same
header, the client's `Authorization`), all at once and within the same timeout in all,
and answers with the newest across them. History names end in the owner tag, so they
are unique across replicas.

The current checkpoint is switched on every replica over the same `fetch`, each switch
with its `SwitchStamp` (service/replica_checkpoint.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .history import GenerationHistory, HistoryEntry, ImageUrlStore

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# name -> the addresses it resolves to (as text); replaced in tests.
PeerResolver = Callable[[str], Awaitable[list[str]]]

# Sent by a replica that fetches from its peer; the peer then answers from its own store
# only. A client may send it too: it then gets what this replica holds, nothing more.
LOCAL_ONLY_HEADER = "x-sd-local-only"
# Carries the token every replica shares (`--peer-token-file`): with LOCAL_ONLY_HEADER, it
# opens a peer's GET /sdapi/v1/options (api/auth.py), which a starting replica reads
# without any client's credentials (service/replica_checkpoint.py). Nothing else: on a
# forwarded switch (which needs the client's credentials as before) it only vouches for
# the switch's stamp.
PEER_TOKEN_HEADER = "x-sd-peer-token"
# When a forwarded checkpoint switch entered the system (service/replica_checkpoint.py);
# believed only with the peer token (or, without one, when not far in the future).
SWITCH_STAMP_HEADER = "x-sd-switch-stamp"
# Where a replica's local-only GET options answer carries its checkpoint's stamp.
SWITCH_STAMP_OPTION = "x_sd_switch_stamp"
FETCH_TIMEOUT_SECONDS = 3.0
# How long one resolution of the peers' name is used (new replicas appear in the
# headless Service's DNS within this, long before they are ready for traffic).
RESOLVE_CACHE_SECONDS = 5.0
# A SwitchStamp as sent: nanoseconds, a dash, 16 hex digits.
_STAMP = re.compile(r"([0-9]{1,30})-([0-9a-f]{16})")
# The owner part of an id: 4 (IPv4) or 16 (IPv6) bytes, unpadded URL-safe base64.
_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}\.([A-Za-z0-9_-]{6}|[A-Za-z0-9_-]{22})$")


@dataclass(frozen=True, order=True)
class SwitchStamp:
    """When a checkpoint switch entered the system; a newer one wins on every replica
    (service/replica_checkpoint.py)."""

    nanoseconds: int  # the wall clock (time.time_ns()) of the replica the client asked
    tiebreak: str  # random, one per switch, carried with it: the same on every replica

    def __str__(self) -> str:
        return f"{self.nanoseconds}-{self.tiebreak}"

    @classmethod
    def parse(cls, text: object) -> SwitchStamp | None:
        """The stamp `str()` wrote; None for anything else."""
        match = _STAMP.fullmatch(text) if isinstance(text, str) else None
        return cls(int(match[1]), match[2]) if match else None


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
        token: str | None = None,
    ):
        self.token = token
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

    def token_matches(self, sent: str | None) -> bool:
        """Whether `sent` is the replicas' shared token (False when there is none), compared
        in constant time."""
        if self.token is None or sent is None:
            return False
        return hmac.compare_digest(hashlib.sha256(sent.encode("utf-8")).digest(),
                                   hashlib.sha256(self.token.encode("utf-8")).digest())

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

    async def others(self) -> list[IPAddress]:
        """Every other replica's address (sorted, so peers are asked in a stable order)."""
        return sorted((a for a in await self.members() if a != self.own_address), key=lambda a: (a.version, a.packed))

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
        png = await self.fetch(
            owner, "GET", path, authorization=authorization, max_bytes=self.max_bytes, content_type="image/png",
            what="image",
        )
        return png if png is not None and png.startswith(b"\x89PNG\r\n\x1a\n") else None

    async def fetch_from_others(
        self, method: str, path: str, *, timeout_seconds: float | None = None, **fetch_args: Any
    ) -> list[tuple[IPAddress, bytes | None]]:
        """`fetch` from every other replica at once: (address, body or None) for each. The
        whole call, finding the replicas included, takes at most `timeout_seconds`
        (default: this object's), however many there are and whatever they do."""
        timeout = self.timeout_seconds if timeout_seconds is None else timeout_seconds
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            others = await asyncio.wait_for(self.others(), min(timeout, self.timeout_seconds))
        except TimeoutError:
            logger.warning("peers: %s not resolved in time; the other replicas not asked", self.peers_name)
            return []
        bodies = await asyncio.gather(
            *(self.fetch(peer, method, path, timeout_seconds=deadline - loop.time(), **fetch_args) for peer in others)
        )
        return list(zip(others, bodies, strict=True))

    async def fetch(
        self,
        peer: IPAddress,
        method: str,
        path: str,
        *,
        authorization: str | None,
        max_bytes: int,
        content_type: str,
        json_body: object = None,
        what: str = "answer",
        timeout_seconds: float | None = None,
        with_token: bool = False,
        headers: dict[str, str] | None = None,
    ) -> bytes | None:
        """The body of `method path` on `peer` (an address `members()` gave: never one a
        client wrote), sent with `LOCAL_ONLY_HEADER` and the client's `authorization`;
        None unless the peer answers 200 with `content_type` and at most `max_bytes`
        within `timeout_seconds` (default: this object's) in all. `with_token` adds the
        replicas' shared token (`PEER_TOKEN_HEADER`), when there is one; `headers` are
        sent too. A failure is
        logged, by peer address and reason only (never the credentials), and is not raised."""
        if authorization is not None and ("\r" in authorization or "\n" in authorization):
            return None
        timeout = self.timeout_seconds if timeout_seconds is None else timeout_seconds
        if timeout <= 0:
            return None
        # Imported here: only a replica with peers ever fetches (and the GPU benchmark's
        # machine, which runs the server without peers, has no httpx2).
        import httpx2

        try:
            return await asyncio.wait_for(
                self._request(
                    httpx2, peer, method, path, authorization, json_body, max_bytes, content_type, timeout,
                    self.token if with_token else None, headers or {},
                ),
                timeout,
            )
        except (OSError, TimeoutError, ValueError, httpx2.HTTPError) as error:
            logger.warning("peers: %s from %s not fetched: %s", what, peer, error or type(error).__name__)
            return None

    async def _request(
        self,
        httpx2,
        peer: IPAddress,
        method: str,
        path: str,
        authorization: str | None,
        json_body: object,
        max_bytes: int,
        content_type: str,
        timeout: float,
        token: str | None,
        extra_headers: dict[str, str],
    ) -> bytes | None:
        host = f"[{peer}]" if peer.version == 6 else str(peer)
        # identity: the body as the peer has it
        headers = {**extra_headers, LOCAL_ONLY_HEADER: "1", "Accept-Encoding": "identity"}
        if authorization is not None:
            headers["Authorization"] = authorization
        if token is not None:
            headers[PEER_TOKEN_HEADER] = token
        # trust_env=False: a cluster's HTTP(S)_PROXY must not carry pod-to-pod traffic.
        async with httpx2.AsyncClient(trust_env=False, follow_redirects=False, timeout=timeout) as client:
            url = f"http://{host}:{self.port}{path}"
            async with client.stream(method, url, headers=headers, json=json_body) as response:
                if response.status_code != 200:
                    logger.info("peers: %s answered %d to %s %s", peer, response.status_code, method, path)
                    return None
                length = response.headers.get("content-length", "")
                media_type = response.headers.get("content-type", "").split(";", 1)[0].strip()
                if media_type != content_type or not length.isdigit():
                    raise ValueError(f"the answer is not {content_type} of known length")
                if int(length) > max_bytes:
                    raise ValueError(f"the answer is larger than {max_bytes} bytes")
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > int(length):
                        raise ValueError("the answer is longer than its Content-Length")
                return bytes(body)


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


# What a history entry may add to its image's base64 in a peer's JSON answer (name, date,
# size, punctuation), and to the whole answer.
_ENTRY_SLACK_BYTES = 1024
_ANSWER_SLACK_BYTES = 64 * 1024


class ReplicaHistory:
    """StableStudio's history: this replica's `GenerationHistory` and, with peers, every
    other replica's, merged newest first.

    Each other replica is asked concurrently at `path` (with `LOCAL_ONLY_HEADER`, so it
    answers with its own entries only) for as many entries as this one keeps at most; the
    whole call takes at most the peers' timeout. A peer that fails, is slow, or answers
    more than `max_entry_bytes` per entry asked (plus slack) or anything but a list of
    entries adds nothing: the answer is what was found."""

    def __init__(self, history: GenerationHistory, peers: Peers | None = None, *, max_entry_bytes: int = 0):
        self.history = history
        self.peers = peers
        self.max_entry_bytes = max_entry_bytes

    async def recent(
        self, limit: int | None, path: str, *, authorization: str | None, local_only: bool
    ) -> list[HistoryEntry]:
        """The newest `limit` entries, newest first; without a limit, all this replica keeps
        (with peers: as many, the newest of all replicas)."""
        own = self.history.recent(limit)
        if local_only or self.peers is None or limit == 0:
            return own
        # Without a limit, as many as one replica keeps: the answer stays as large as
        # without peers, and a peer never has to send more than it holds.
        wanted = self.history.capacity if limit is None else min(limit, self.history.capacity)
        if wanted == 0:
            return own
        answers = await self._from_others(wanted, path, authorization)
        merged = sorted([*own, *(entry for answer in answers for entry in answer)], key=lambda e: -e.create_date)
        unique: dict[str, HistoryEntry] = {}
        for entry in merged:  # a name is StableStudio's key for an image: one entry per name
            unique.setdefault(entry.image_name, entry)
        return list(unique.values())[: limit if limit is not None else wanted]

    async def _from_others(self, wanted: int, path: str, authorization: str | None) -> list[list[HistoryEntry]]:
        peers = self.peers
        assert peers is not None
        answers = await peers.fetch_from_others(
            "POST", path, authorization=authorization, json_body={"limit": wanted},
            max_bytes=wanted * (self.max_entry_bytes + _ENTRY_SLACK_BYTES) + _ANSWER_SLACK_BYTES,
            content_type="application/json", what="history",
        )
        found = []
        for peer, body in answers:
            if body is None:
                continue
            entries = await asyncio.to_thread(_history_entries, body)  # megabytes of JSON: off the event loop
            if entries is None:
                logger.warning("peers: history from %s not used: not a list of history entries", peer)
                continue
            found.append(entries[:wanted])
        return found


def _history_entries(body: bytes) -> list[HistoryEntry] | None:
    """A peer's history answer as entries, or None when it is not one."""
    try:
        items = json.loads(body)
    except ValueError:
        return None
    if not isinstance(items, list):
        return None
    entries = []
    for item in items:
        if not isinstance(item, dict):
            return None
        name, date, content, width, height = (item.get(k) for k in ("image_name", "create_date", "content", "width", "height"))
        if not (
            isinstance(name, str) and isinstance(content, str)
            and isinstance(date, int | float) and not isinstance(date, bool) and math.isfinite(date)
            and isinstance(width, int) and not isinstance(width, bool)
            and isinstance(height, int) and not isinstance(height, bool)
        ):
            return None
        entries.append(HistoryEntry(name, float(date), content, width, height))
    return entries
