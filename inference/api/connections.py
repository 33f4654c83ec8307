"""Connection hygiene under uvicorn's h11 protocol: slow or idle clients cannot hold a
replica's connections, and a storm of them is logged once, not per connection.

uvicorn bounds only the idle time between keep-alive requests (`timeout_keep_alive`); a
client that sends half a request and waits holds its connection (and a file descriptor)
for ever. Here:

- a request's headers must arrive within `header_timeout` of the connection being ready
  for it (opened, or the previous response sent), and its body within `body_timeout` of
  its headers; past that the client gets a 408 and the connection is closed;
- at most `max_connections` are open: a new one past that closes the connection that has
  waited longest for a request (idle keep-alive or half-sent headers); when every
  connection has a request in progress, the new one gets a 503 and is closed;
- `RateLimitedLogFilter` turns asyncio's per-attempt "socket.accept() out of system
  resource" tracebacks (thousands a second when the open-file limit is reached) into one
  line a minute with a count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

# The request line and headers together, at most (h11 answers 400 past it). Far above
# any real request; an oversized Authorization header inside it is a 401 (api/auth.py).
MAX_REQUEST_HEAD_BYTES = 64 * 1024
# File descriptors kept for everything but client connections (model files, the
# listening socket, logs, Python's own): the connection bound stays below the limit.
RESERVED_FILE_DESCRIPTORS = 64


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    header_timeout: float
    body_timeout: float


def _plain_response(status: int, reason: str, text: str, extra: str = "") -> bytes:
    body = text.encode("ascii")
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
        f"{extra}content-length: {len(body)}\r\n\r\n"
    ).encode("ascii") + body


_REQUEST_TIMEOUT = _plain_response(408, "Request Timeout", "the request did not arrive in time")
_BUSY = _plain_response(503, "Service Unavailable", "too many open connections", "retry-after: 1\r\n")


class _Throttled:
    """A warning logged at most once per `interval` seconds, with how often it happened."""

    def __init__(self, message: str, interval: float = 60.0):
        self.message = message
        self.interval = interval
        self._last = float("-inf")
        self._count = 0

    def __call__(self) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._last >= self.interval:
            log.warning("%s (%d time(s) since the last report)", self.message, self._count)
            self._last, self._count = now, 0


_shed_busy = _Throttled("connection limit reached with every connection busy: new connections get 503")
_evicted = _Throttled("connection limit reached: closed the connection that waited longest for a request")
_timed_out = _Throttled("closed connection(s) whose request did not arrive within the read timeout")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with read timeouts and a connection bound (see module doc)."""

    limits: ConnectionLimits  # set by `guarded_protocol`

    def connection_made(self, transport) -> None:
        self._read_timer: asyncio.TimerHandle | None = None
        self._reading: str | None = None  # "headers", "body" or None (not reading a request)
        self._waiting_since = time.monotonic()
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            _shed_busy()
            self.transport.write(_BUSY)
            self.transport.close()
            return
        self._watch_reads()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_reads()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_reads()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self._reading = None
        super().connection_lost(exc)

    # -- read timeouts -----------------------------------------------------------------

    def _watch_reads(self) -> None:
        """Arms the timer of the part of the request now awaited (after every event that
        can move the client's side of the h11 state machine)."""
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        reading = "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        if reading == self._reading:
            return
        self._stop_timer()
        self._reading = reading
        if reading == "headers":
            self._waiting_since = time.monotonic()
            self._read_timer = self.loop.call_later(self.limits.header_timeout, self._read_timed_out)
        elif reading == "body":
            self._read_timer = self.loop.call_later(self.limits.body_timeout, self._read_timed_out)

    def _stop_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        partial = self._reading == "body" or bool(self.conn.trailing_data[0])
        if partial and (self.cycle is None or self.cycle.response_complete or not self.cycle.response_started):
            _timed_out()
            self.transport.write(_REQUEST_TIMEOUT)
        if self.cycle is not None:
            self.cycle.keep_alive = False
        self.transport.close()  # an idle connection (nothing sent) is closed quietly

    # -- the connection bound --------------------------------------------------------

    def _make_room(self) -> bool:
        """Closes the connection that has waited longest for a request; False if every
        other connection has a request in progress."""
        waiting = [
            other for other in self.connections
            # The server's connections include other protocols (websockets); only ours read with a timer.
            if other is not self
            and isinstance(other, GuardedH11Protocol)
            and other._reading == "headers"
            and not other.transport.is_closing()
        ]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda other: other._waiting_since)
        _evicted()
        oldest._stop_timer()
        oldest.transport.close()
        oldest.connections.discard(oldest)  # counted out now; connection_lost follows
        return True


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """The protocol class for `uvicorn.Config(http=...)`, bound to these limits."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


class RateLimitedLogFilter(logging.Filter):
    """Lets a record whose message starts with one of `prefixes` through at most once per
    `interval` seconds per prefix, noting how many were dropped in between."""

    def __init__(self, prefixes: tuple[str, ...], interval: float = 60.0):
        super().__init__()
        self.prefixes = prefixes
        self.interval = interval
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        prefix = next((p for p in self.prefixes if message.startswith(p)), None)
        if prefix is None:
            return True
        now = time.monotonic()
        if now - self._last.get(prefix, float("-inf")) < self.interval:
            self._dropped[prefix] = self._dropped.get(prefix, 0) + 1
            return False
        self._last[prefix] = now
        dropped = self._dropped.pop(prefix, 0)
        # One line, no traceback: the message says all there is to say.
        record.msg = f"{message} ({dropped} more like it in the last {self.interval:.0f}s were not logged)"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        return True


# asyncio's message when accept() fails with EMFILE/ENFILE/ENOBUFS/ENOMEM.
ACCEPT_ERRORS = ("socket.accept() out of system resource",)
