"""Cold start of `builtin:tiny`: process spawn to ready, and the part beyond the imports.

The target (docs/benchmarks.md) is at most 2.5 s from process start to ready beyond the
import of torch, transformers and diffusers, which the server cannot shorten. Each run
spawns `python -m inference serve --model builtin:tiny` on a free port and polls `/readyz`
until it answers 200 (the outside figure), then reads from the same process's /metrics its
own ready figure (`sd_startup_seconds`, from the process's spawn) and the time it spent in
those imports (`sd_startup_import_seconds`). Beyond the imports = the two subtracted, per
run. The model is built into the cache by a first, untimed start, so no run pays for that.

    python -m bench.cold_start [--runs 5]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import httpx

from .common import DEFAULT_CACHE, machine, median, server, table, timed_server

TARGET_BEYOND_IMPORTS_SECONDS = 2.5


def server_startup(url: str) -> tuple[float, float]:
    """(sd_startup_seconds, sd_startup_import_seconds) from the server's /metrics."""
    values = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(("sd_startup_seconds ", "sd_startup_import_seconds ")):
            name, value = line.split()
            values[name] = float(value)
    return values["sd_startup_seconds"], values["sd_startup_import_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()

    print(f"load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    with server("--model", "builtin:tiny", cache_dir=args.cache_dir):
        pass  # builds builtin:tiny into the cache once, untimed
    outside, ready, imports, beyond = [], [], [], []
    for run in range(args.runs):
        with timed_server("--model", "builtin:tiny", cache_dir=args.cache_dir) as (url, seconds):
            startup, import_seconds = server_startup(url)
        outside.append(seconds)
        ready.append(startup)
        imports.append(import_seconds)
        beyond.append(startup - import_seconds)
        print(f"run {run + 1}: spawn to ready {seconds:.2f}s, server says {startup:.2f}s, "
              f"imports {import_seconds:.2f}s, beyond them {startup - import_seconds:.2f}s", flush=True)

    def cells(values: list[float]) -> list[str]:
        return [f"{median(values):.2f}", f"{min(values):.2f}", f"{max(values):.2f}"]

    print(f"\n{machine()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end\n")
    print(table(["figure", "median (s)", "min (s)", "max (s)"], [
        ["spawn to first 200 on /readyz (outside)", *cells(outside)],
        ["server's ready figure (`sd_startup_seconds`)", *cells(ready)],
        ["importing torch, transformers, diffusers", *cells(imports)],
        ["beyond the imports (ready - imports)", *cells(beyond)],
    ]))
    verdict = "met" if median(beyond) <= TARGET_BEYOND_IMPORTS_SECONDS else "NOT met"
    print(f"\nbeyond the imports: median {median(beyond):.2f}s, target <= {TARGET_BEYOND_IMPORTS_SECONDS}s: {verdict}")


if __name__ == "__main__":
    main()
