"""Two real replicas on loopback addresses for the peer tests (service/peers.py):
servers that share one port on different 127.0.0.x addresses, as pods share a container
port, with auth on and a fake resolver standing in for the headless Service's DNS; and
`FakePeer`, a listener that records what a replica sends it."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import bcrypt

from inference.api.app import create_app
from inference.config import ServerSettings

from .server import ThreadedServer

PEERS_NAME = "sd-peers.test.svc.cluster.local"


def port_free_on_every_address(addresses: list[str]) -> int:
    """A port that is free on each of `addresses` (the first one picks it)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind((addresses[0], 0))
            port = first.getsockname()[1]
            try:
                for address in addresses[1:]:
                    with socket.socket() as other:
                        other.bind((address, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free on every loopback address")


def write_htpasswd(path, password: str) -> None:
    path.write_text(f"admin:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n")


@contextlib.contextmanager
def replicas(addresses: list[str], port: int, resolve: Callable[[str], list[str]], *, wrap_runner=None,
             **settings) -> Iterator[list[ThreadedServer]]:
    """A server per address (builtin:tiny unless `settings` name a `model`, `--peers
    PEERS_NAME`), whose DNS lookups answer `resolve(name)`; `settings` are the rest of each
    server's settings, `wrap_runner` create_app's (conftest.slow_steps: jobs to watch)."""
    settings.setdefault("model", "builtin:tiny")

    async def fake_dns(name: str) -> list[str]:
        return resolve(name)

    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(ThreadedServer(
                create_app(ServerSettings(port=port, advertise_address=address, peers=PEERS_NAME,
                                          **settings), peer_resolver=fake_dns,
                           wrap_runner=wrap_runner),
                host=address, port=port,
            ))
            for address in addresses
        ]
        yield servers


class FakePeer:
    """A listener on (host, port) that records each request's head; answers `reply` and
    closes, or with `reply=None` holds the connection open without a word."""

    def __init__(self, host: str, port: int, reply: bytes | None = b""):
        self.requests: list[bytes] = []
        self._reply = reply
        self._held: list[socket.socket] = []
        self._sock = socket.create_server((host, port))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            self.requests.append(data)
            if self._reply is None:
                self._held.append(conn)
            else:
                conn.sendall(self._reply)
                conn.close()

    def __enter__(self) -> FakePeer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._sock.close()
