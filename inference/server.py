"""Running the app under uvicorn with Kubernetes-friendly shutdown.

On SIGTERM (sent after the Deployment's preStop hook), readiness turns false and new
generations get 503 at once, while every admitted request runs to completion; then
uvicorn closes and the process exits 0. A model that fails to load exits non-zero, so the
pod shows the error in its log and restarts.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

import uvicorn

from .api.app import create_app
from .config import ServerSettings

log = logging.getLogger(__name__)


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_exit_signal):
        super().__init__(config)
        self._on_exit_signal = on_exit_signal

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM or sig == signal.SIGINT:
            self._on_exit_signal()
        super().handle_exit(sig, frame)


def serve(settings: ServerSettings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(settings)
    runtime = app.state.runtime
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # Uvicorn waits for in-flight requests on shutdown; admitted generations finish.
        timeout_graceful_shutdown=None,
        proxy_headers=True,
        forwarded_allow_ips="*",
    )
    server = GracefulServer(config, on_exit_signal=runtime.begin_drain)

    def fatal() -> None:
        server.should_exit = True

    runtime.on_fatal = fatal
    log.info("serving %s on http://%s:%d", settings.model, settings.host, settings.port)
    server.run()
    if runtime.load_error:
        return 1
    return 0
