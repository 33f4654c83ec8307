"""Shared by the CPU benchmarks: a real server subprocess, medians, and a table printer."""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "sd-bench-cache"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(*flags: str, cache_dir: Path = DEFAULT_CACHE):
    """`python -m inference serve` on a free port; yields its base URL once ready."""
    with timed_server(*flags, cache_dir=cache_dir) as (url, _seconds):
        yield url


@contextmanager
def timed_server(*flags: str, cache_dir: Path = DEFAULT_CACHE, env: dict[str, str] | None = None, timeout: float = 300,
                 log_path: Path | None = None, module: str = "inference", cwd: Path = REPO):
    """As `server`, yielding (base URL, seconds from spawn to the first 200 on /readyz).
    The server's output goes to `log_path` (default: a new temporary file). `module` is
    what `python -m MODULE serve ...` runs (bench.gpu_standin: the server with a stand-in GPU), in
    `cwd` (another checkout's code)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    if log_path is None:
        log = tempfile.NamedTemporaryFile(prefix="sd-bench-", suffix=".log", delete=False)
    else:
        log = open(log_path, "wb")  # noqa: SIM115 - closed in the finally below, as the temporary file
    command = [sys.executable, "-m", module, "serve", "--port", str(port), "--cache-dir", str(cache_dir),
               "--log-level", "warning", *flags]
    spawned = time.monotonic()
    process = subprocess.Popen(
        command, cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, stdout=log, stderr=log
    )
    try:
        deadline = spawned + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}; see {log.name}:\n{_tail(log.name)}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready after {timeout:.0f}s; see {log.name}:\n{_tail(log.name)}")
            time.sleep(0.1)
        yield url, time.monotonic() - spawned
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _tail(path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}")


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, so the output can be pasted into docs/benchmarks.md."""
    # strict: a row with a missing or extra cell is a bug in the caller, not a shorter table.
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
