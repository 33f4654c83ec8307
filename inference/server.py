"""Running the app under uvicorn with Kubernetes-friendly shutdown.

On SIGTERM (sent after the Deployment's preStop hook) the server drains before it closes:
readiness turns false (so the endpoint leaves the Service) and new generations get 503 at
once, while the listener stays open and every admitted request (running or queued) runs
to completion. Only then does uvicorn shut down (it still waits for responses being
written), and the process exits 0. A second signal stops waiting for the queue; a third
(SIGINT) forces uvicorn to quit. A model that fails to load exits non-zero, so the pod
shows the error in its log and restarts.

The drain has a deadline (`--drain-timeout-seconds`): a pipeline call stuck inside one
step never finishes, and its thread cannot be stopped (nor joined at interpreter exit),
so past the deadline the process logs what it gives up on and ends with `os._exit(1)`,
before Kubernetes' SIGKILL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from types import FrameType

import uvicorn

from .api.app import create_app
from .api.connections import (
    ACCEPT_ERRORS,
    MAX_REQUEST_HEAD_BYTES,
    RESERVED_FILE_DESCRIPTORS,
    ConnectionLimits,
    RateLimitedLogFilter,
    guarded_protocol,
)
from .config import ServerSettings
from .engine.oom import BatchRunner

log = logging.getLogger(__name__)

# After the drain deadline, how long uvicorn's own shutdown (closing connections, the
# lifespan) may take before the process exits regardless.
SHUTDOWN_GRACE_SECONDS = 5.0


class GracefulServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        *,
        begin_drain: Callable[[], None],
        drained: Callable[[], Awaitable[None]],
        drain_timeout: float | None = None,
    ):
        super().__init__(config)
        self._begin_drain = begin_drain
        self._drained = drained
        self._drain_timeout = drain_timeout
        self.drain_timed_out = False
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_watch: asyncio.Task | None = None

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig not in (signal.SIGTERM, signal.SIGINT) or self._loop is None:
            super().handle_exit(sig, frame)
            return
        # Not passed to uvicorn's handler on purpose: uvicorn records the signal and
        # re-raises it once shut down, and SIGTERM's default action would then end the
        # process with -15 instead of exit 0 after a clean drain.
        if not self._draining:
            self._draining = True
            log.info("received %s: draining (readiness false, admitted work finishes)", signal.Signals(sig).name)
            self._begin_drain()
            if self._drain_timeout is not None:
                # Whatever holds the process after the deadline (a stuck call's request,
                # a shutdown step waiting on it), it ends then.
                _exit_soon(1, grace=self._drain_timeout + SHUTDOWN_GRACE_SECONDS)
            self._loop.call_soon_threadsafe(self._watch_drain)
        elif not self.should_exit:
            log.warning("second signal: shutting down without waiting for queued work")
            self.should_exit = True
        else:
            self.force_exit = True

    def _watch_drain(self) -> None:
        self._drain_watch = asyncio.ensure_future(self._exit_when_drained())

    async def _exit_when_drained(self) -> None:
        try:
            await asyncio.wait_for(self._drained(), self._drain_timeout)
        except asyncio.TimeoutError:
            log.error(
                "drain timeout: admitted work still running %gs after SIGTERM (a stuck pipeline call?); exiting",
                self._drain_timeout,
            )
            self.drain_timed_out = True
            # uvicorn's shutdown (and the lifespan's, which drains) would wait for the stuck
            # requests: a second to close connections, then the process ends.
            self.force_exit = True
            _exit_soon(1, grace=1.0)
        else:
            log.info("drained: every admitted request has finished; shutting down")
        self.should_exit = True


def connection_bound(wanted: int) -> int:
    """`--max-connections`, lowered to fit the process's open-file limit (a connection is
    a file descriptor; past the limit, accept() fails and nothing is served)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or wanted <= soft - RESERVED_FILE_DESCRIPTORS:
        return wanted
    bound = max(soft - RESERVED_FILE_DESCRIPTORS, 8)
    log.warning("open-file limit is %d: serving at most %d connections instead of %d", soft, bound, wanted)
    return bound


def _exit_soon(code: int, *, grace: float) -> None:
    """Ends the process after `grace` seconds whatever else is still running (a daemon
    timer, so a clean exit before then is not held up by it)."""

    def hard_exit() -> None:
        log.error("exiting now (code %d) without waiting for running work", code)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)

    timer = threading.Timer(grace, hard_exit)
    timer.daemon = True
    timer.start()


def serve(settings: ServerSettings, *, wrap_runner: Callable[[BatchRunner], BatchRunner] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean drain, 1 if the model failed to load.

    `wrap_runner` is for tests that need a deterministic in-flight generation.
    """
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # When the open-file limit is reached, asyncio logs a traceback per accept attempt
    # (thousands a second): one line a minute says the same.
    logging.getLogger("asyncio").addFilter(RateLimitedLogFilter(ACCEPT_ERRORS))
    app = create_app(settings, wrap_runner=wrap_runner)
    runtime = app.state.runtime
    limits = ConnectionLimits(
        max_connections=connection_bound(settings.max_connections),
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        http=guarded_protocol(limits),
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        # Uvicorn waits for in-flight requests on shutdown; admitted generations finish.
        timeout_graceful_shutdown=None,
        # X-Forwarded-For/-Proto are believed from the configured proxies only; with
        # none, the client address (and the access log) is the TCP peer.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
    )
    server = GracefulServer(
        config, begin_drain=runtime.begin_drain, drained=runtime.drained, drain_timeout=settings.drain_timeout_seconds
    )

    def fatal() -> None:
        server.should_exit = True

    runtime.on_fatal = fatal
    log.info("serving %s on http://%s:%d", ", ".join(settings.model), settings.host, settings.port)
    server.run()
    code = 1 if server.drain_timed_out or runtime.load_error else 0
    if runtime.batcher is not None and runtime.batcher.call_in_flight:
        # A call stuck for good (the watchdog gave up on it, or the drain timed out): its
        # daemon thread must not be torn down by the interpreter's exit while inside torch.
        log.warning("exiting with a pipeline call still running")
        logging.shutdown()
        os._exit(code)
    return code
