"""A real `serve()` process whose generations wait at a gate, for shutdown tests.

    python -m tests.inference.gated_server GATE_FILE PORT CACHE_DIR

Each pipeline call blocks until GATE_FILE exists, then runs the real pipeline, so a test
can hold a generation in flight for as long as it needs (SIGTERM, readiness checks)
without depending on how fast this machine is.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from inference.config import ServerSettings
from inference.server import serve


def gated(gate: Path):
    def wrap(run):
        def run_after_gate(key, tasks, on_step):
            while not gate.exists():
                time.sleep(0.02)
            return run(key, tasks, on_step)

        return run_after_gate

    return wrap


if __name__ == "__main__":
    gate, port, cache_dir = sys.argv[1:4]
    settings = ServerSettings(model="builtin:tiny", port=int(port), cache_dir=Path(cache_dir), max_batch_size=1)
    sys.exit(serve(settings, wrap_runner=gated(Path(gate))))
