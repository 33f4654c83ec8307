"""The GPU benchmark's server stages: a real `python -m inference serve` on the saved SD 1.5
folder, HTTP with concurrent clients (batched and with `--max-batch-size 1`) and the time to
ready with an empty and a warm compile cache.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .gpu_harness import Bench


def server_flags(bench: Bench, folder: Path, max_batch: int) -> list[str]:
    flags = ["--model", str(folder), "--max-batch-size", str(max_batch), "--queue-size", "64",
             "--log-level", "info"]
    if bench.args.smoke:
        # Eager on the CPU, but warmed, so the warming path runs here too.
        flags += ["--compile", "off", "--warmup-sizes", "native", "--device", "cpu"]
    else:
        flags += ["--compile", "auto"]
    if not bench.precompile:  # the preflight found precompiled forwards broken here
        flags += ["--precompile", "off"]
    return flags


def http_stage(bench: Bench, folder: Path, arch: dict, inductor_dir: Path) -> None:
    from .common import timed_server
    from .throughput import http_round, mean_batch

    env = {"TORCHINDUCTOR_CACHE_DIR": str(inductor_dir)}
    body = {"steps": bench.args.steps, "cfg_scale": 7.0}
    requests = 1 if bench.args.smoke else bench.args.http_requests
    shutil.rmtree(inductor_dir, ignore_errors=True)
    for cache in ("empty", "warm"):
        with timed_server(*server_flags(bench, folder, 4), cache_dir=bench.work / "models", env=env,
                          timeout=bench.server_timeout(), log_path=bench.server_log(f"{cache}-cache")) as (url, seconds):
            bench.cold_starts.append({"model": arch["name"], "cache": cache, "seconds_to_ready": round(seconds, 1),
                                      "startup_metric_s": _metric(url, "sd_startup_seconds"),
                                      "max_batch_size": 4, "precompile": "auto" if bench.precompile else "off"})
            bench.note(f"server ready in {seconds:.1f}s with {'an empty' if cache == 'empty' else 'a warm'} compile cache")
            if cache == "empty":
                http_round(url, bench.args.clients, 1, body, seed_base=50_000)  # warm the HTTP path
                result = http_round(url, bench.args.clients, requests, body)
                bench.http.append({"model": arch["name"], "max_batch_size": 4, "clients": bench.args.clients,
                                   **_rounded(result), "mean_batch": _round(mean_batch(url)),
                                   # 0 when every request ran the warmed, compiled shapes
                                   "uncompiled_calls": _metric_total(url, "sd_uncompiled_calls_total")})
                bench.note(f"HTTP, {bench.args.clients} clients, max batch 4: {result['images_per_s']:.2f} images/s, "
                           f"p50 {result['p50_s']:.2f}s, p95 {result['p95_s']:.2f}s")
        bench.save()


def traced_restart_stage(bench: Bench, folder: Path, arch: dict, inductor_dir: Path) -> None:
    """The warm restart with `--precompile off`: inductor's caches only, so dynamo traces
    every warmed shape, as before precompiled forwards (engine/precompiled.py). The
    ahead-of-time compiles of the HTTP stage did not fill the entries dynamo's own compile
    looks up, so a first start fills them (a compile), and the second is the restart.
    Against the `warm` row of the HTTP stage (which loads them): what precompiling saves."""
    from .common import timed_server

    env = {"TORCHINDUCTOR_CACHE_DIR": str(inductor_dir)}
    flags = [*server_flags(bench, folder, 4), "--precompile", "off"]
    for cache in ("filling dynamo's entries", "warm"):
        with timed_server(*flags, cache_dir=bench.work / "models", env=env, timeout=bench.server_timeout(),
                          log_path=bench.server_log(f"traced-{cache.split()[0]}")) as (url, seconds):
            bench.cold_starts.append({"model": arch["name"], "cache": cache, "seconds_to_ready": round(seconds, 1),
                                      "startup_metric_s": _metric(url, "sd_startup_seconds"),
                                      "max_batch_size": 4, "precompile": "off"})
            bench.note(f"server with --precompile off ready in {seconds:.1f}s ({cache})")
        bench.save()


def eager_start_stage(bench: Bench, folder: Path, arch: dict) -> None:
    """Spawn to ready with `--compile off` (nothing to compile or warm): the cold-start
    target for a GPU without compilation, SD 1.5 fp16 from the local cache < 10 s."""
    from .common import timed_server

    flags = server_flags(bench, folder, 4)
    flags[flags.index("--compile") + 1] = "off"
    with timed_server(*flags, cache_dir=bench.work / "models", timeout=bench.server_timeout(),
                      log_path=bench.server_log("eager-start")) as (url, seconds):
        bench.cold_starts.append({"model": arch["name"], "cache": "none (--compile off)",
                                  "seconds_to_ready": round(seconds, 1),
                                  "startup_metric_s": _metric(url, "sd_startup_seconds"),
                                  "import_s": _metric(url, "sd_startup_import_seconds"), "max_batch_size": 4})
        bench.note(f"server with --compile off ready in {seconds:.1f}s")
    bench.save()


def nobatch_stage(bench: Bench, folder: Path, arch: dict, inductor_dir: Path) -> None:
    from .common import timed_server
    from .throughput import http_round, mean_batch

    env = {"TORCHINDUCTOR_CACHE_DIR": str(inductor_dir)}
    body = {"steps": bench.args.steps, "cfg_scale": 7.0}
    requests = 1 if bench.args.smoke else bench.args.http_requests
    with timed_server(*server_flags(bench, folder, 1), cache_dir=bench.work / "models", env=env,
                      timeout=bench.server_timeout(), log_path=bench.server_log("nobatch")) as (url, seconds):
        bench.note(f"server (max batch 1) ready in {seconds:.1f}s")
        http_round(url, bench.args.clients, 1, body, seed_base=50_000)
        result = http_round(url, bench.args.clients, requests, body)
        bench.http.append({"model": arch["name"], "max_batch_size": 1, "clients": bench.args.clients,
                           **_rounded(result), "mean_batch": _round(mean_batch(url))})
    bench.save()


def _metric(url: str, name: str) -> float | None:
    import httpx

    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return round(float(line.split()[1]), 2)
    return None


def _metric_total(url: str, name: str) -> float:
    """The sum of a labelled metric's series (0 when it has none yet)."""
    import httpx

    lines = httpx.get(f"{url}/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(name + "{"))


def _round(value):
    return None if value is None else round(value, 3)


def _rounded(result: dict) -> dict:
    return {key: _round(value) if isinstance(value, float) else value for key, value in result.items()}
