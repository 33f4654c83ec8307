"""A real `serve()` process whose pipeline calls hang inside one step, for watchdog tests.

    python -m tests.inference.stuck_server PORT CACHE_DIR STALL_SECONDS DRAIN_TIMEOUT_SECONDS

Every pipeline call blocks without reporting a step (as a call stuck in a GPU kernel
would), forever: the interrupt flag the step callback reads is never looked at.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from inference.config import ServerSettings
from inference.server import serve

_NEVER = threading.Event()


def stuck(run):
    def run_stuck(key, tasks, on_step):
        _NEVER.wait()  # no step, no return
        return run(key, tasks, on_step)

    return run_stuck


if __name__ == "__main__":
    port, cache_dir, stall, drain = sys.argv[1:5]
    settings = ServerSettings(
        model="builtin:tiny", port=int(port), cache_dir=Path(cache_dir), stall_seconds=float(stall),
        drain_timeout_seconds=float(drain),
    )
    sys.exit(serve(settings, wrap_runner=stuck))
