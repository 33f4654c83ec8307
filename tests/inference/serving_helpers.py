"""Helpers for the serving tests: a gate in front of the batch runner, an in-process
server built around it, and a Prometheus scrape parser.

The gate makes batching deterministic without timing: while it is closed, the worker is
held inside a pipeline call, so the test can queue exactly the requests it wants (watching
`sd_queue_waiting`) before letting the batch run.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from inference.api.app import create_app
from inference.config import ServerSettings

from .server import wait_ready

SMALL = {"width": 64, "height": 64, "steps": 3}
WAIT_LIMIT_S = 120  # a hang detector, not a performance assertion


class Gate:
    """Wraps the runner: records each call's prompts, and blocks while closed."""

    def __init__(self, *, fault=None):
        self._open = threading.Event()
        self._open.set()
        self.entered = threading.Event()
        self.calls: list[list[str]] = []
        self._fault = fault

    def close(self) -> None:
        self._open.clear()
        self.entered.clear()

    def open(self) -> None:
        self._open.set()

    @property
    def batch_sizes(self) -> list[int]:
        return [len(prompts) for prompts in self.calls]

    def wrap(self, run):
        def gated_run(key, tasks, on_step):
            self.calls.append([task.prompt for task in tasks])
            self.entered.set()
            if not self._open.wait(WAIT_LIMIT_S):
                raise TimeoutError("the test never opened the gate")
            if self._fault is not None:
                self._fault(key, tasks)
            return run(key, tasks, on_step)

        return gated_run


@contextmanager
def gated_server(cache_dir: Path, gate: Gate, **settings):
    """uvicorn in a thread, serving an app whose runner goes through `gate`.

    The listening socket is bound here, on port 0, and handed to uvicorn: picking a free
    port and binding it later races with other test runs on a shared machine.
    """
    app = create_app(ServerSettings(model="builtin:tiny", cache_dir=cache_dir, **settings), wrap_runner=gate.wrap)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    url = "http://127.0.0.1:%d" % listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        wait_ready(url)
        with httpx.Client(base_url=url, timeout=WAIT_LIMIT_S) as client:
            yield client
    finally:
        gate.open()  # never leave a drain waiting on a closed gate
        server.should_exit = True
        thread.join(WAIT_LIMIT_S)
        listener.close()


def scrape(client: httpx.Client) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics as {(name, labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric(client: httpx.Client, name: str, **labels) -> float:
    return scrape(client).get((name, frozenset((k, str(v)) for k, v in labels.items())), 0.0)


def wait_until(condition, what: str) -> None:
    """Polls `condition` until it holds; fails (never sleeps forever) after WAIT_LIMIT_S."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
