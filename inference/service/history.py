"""Bounded in-memory stores of generated images.

`GenerationHistory` keeps the most recent images of requests that asked for
`save_images: true` (what StableStudio's history route reads). `ImageUrlStore` keeps the
images an OpenAI `response_format: "url"` request is given links to, for a limited time.
Both are bounded by count, so memory stays flat however long the server runs; nothing
is written to disk (the container's root filesystem is read-only).
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass


@dataclass(frozen=True)
class HistoryEntry:
    image_name: str
    create_date: float  # seconds since the epoch, as StableStudio expects
    content: str  # base64 PNG with its `parameters` chunk
    width: int
    height: int


class GenerationHistory:
    """The newest `capacity` saved images of this replica.

    StableStudio keys its images by name, so names never repeat: after the running number
    and the seed comes `instance`, a token of this process (a restarted server counts from
    1 again, and a fixed seed would otherwise give an earlier image's name to a new one;
    A1111 instead continues the numbers it finds in its output folder), and with
    `owner_tag` (service/peers.py: this replica's address) the replica, since every
    replica counts from 1: `00001-<seed>-<instance>-<owner>.png`."""

    def __init__(self, capacity: int, owner_tag: str | None = None, instance: str | None = None):
        self.capacity = max(0, capacity)
        self._entries: deque[HistoryEntry] = deque(maxlen=self.capacity)
        instance = instance if instance is not None else secrets.token_hex(3)
        self._name_suffix = f"-{instance}" + (f"-{owner_tag}" if owner_tag else "")
        self._counter = 0
        self._lock = threading.Lock()

    def add(self, images: list[str], seeds: list[int], width: int, height: int) -> None:
        if self._entries.maxlen == 0:
            return
        now = time.time()
        with self._lock:
            # An interrupted request saves the images it has, fewer than its seeds.
            for image, seed in zip(images, seeds, strict=False):
                self._counter += 1
                # A1111's own file naming: a running number and the seed (A1111 may add
                # more after them, as the owner tag does here).
                name = f"{self._counter:05d}-{seed}{self._name_suffix}.png"
                self._entries.append(HistoryEntry(name, now, image, width, height))

    def recent(self, limit: int | None = None) -> list[HistoryEntry]:
        """Newest first."""
        with self._lock:
            entries = list(reversed(self._entries))
        return entries if limit is None else entries[:limit]


class ImageUrlStore:
    """PNG bytes under unguessable ids, each kept for `ttl_seconds`, at most `capacity`.

    With `owner_tag` (service/peers.py: this replica's address), an id is
    `<token>.<owner_tag>`, so any replica can tell which one holds it."""

    def __init__(self, capacity: int, ttl_seconds: float, clock=time.monotonic, owner_tag: str | None = None):
        self.capacity = capacity
        self.ttl_seconds = ttl_seconds
        self._id_suffix = f".{owner_tag}" if owner_tag else ""
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def put_base64(self, image_b64: str) -> str:
        return self.put(base64.b64decode(image_b64))

    def put(self, png: bytes) -> str:
        image_id = secrets.token_urlsafe(18) + self._id_suffix
        with self._lock:
            self._expire()
            self._items[image_id] = (self._clock() + self.ttl_seconds, png)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return image_id

    def get(self, image_id: str) -> bytes | None:
        with self._lock:
            self._expire()
            item = self._items.get(image_id)
        return None if item is None else item[1]

    def _expire(self) -> None:
        now = self._clock()
        # Insertion order is expiry order (one TTL for all), so stop at the first live one.
        while self._items:
            first = next(iter(self._items))
            if self._items[first][0] > now:
                break
            del self._items[first]
