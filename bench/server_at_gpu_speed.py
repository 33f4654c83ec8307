"""Does the server keep up with a GPU? Images/s through HTTP with 8 clients vs the pipeline
alone, with the pipeline replaced by a stand-in that takes an H100's time and returns
real-size images (bench/gpu_standin.py), so that everything around it is real and measured
on this CPU: queueing and batching, admission, PNG encoding and base64 (off the event
loop), the infotexts, JSON, uvicorn and the loopback.

    python -m bench.server_at_gpu_speed [--rounds 3] [--it-per-s 100] [--batch-scaling 2.2]
        [--steps 20] [--size 512] [--clients 8] [--max-batch-size 4] [--json PATH]

The server is `python -m bench.gpu_standin serve ...`: `inference.server.serve`, the same
code path as `python -m inference serve`, with the batcher's runner replaced. Rounds
alternate: an HTTP round (8 closed-loop clients, `--requests` each), then the stand-in
called directly, in this process, with the batch sizes the server formed in the latest
HTTP round, one after the other ("the pipeline alone"). The ratio of the medians
(target >= 0.95) is what the server loses around the GPU. Also reported: the server
process's CPU seconds per image over the HTTP rounds (every thread: event loop, encoding
pool, batcher), which says how many cores a GPU node's server needs at this rate, and the
load average, since the clients and the server share this machine's cores.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from .common import REPO, machine, median, table, timed_server
from .gpu_standin import ENV, GpuTime, StandInRunner, StandInSettings, runner_from
from .throughput import http_round


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all its threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")" that ends the command name: field 3 is index 0, so utime (14) and stime (15).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_calls(calls_log: Path, skip: int) -> list[tuple[int, float, float]]:
    """(batch size, seconds, started) of the stand-in's calls from line `skip` on."""
    if not calls_log.exists():
        return []
    calls = []
    for line in calls_log.read_text().splitlines()[skip:]:
        size, seconds, started = line.split()
        calls.append((int(size), float(seconds), float(started)))
    return calls


def idle_gaps(calls: list[tuple[int, float, float]]) -> list[float]:
    """Seconds the stand-in GPU sat idle between one call's end and the next one's start."""
    return [b[2] - (a[2] + a[1]) for a, b in zip(calls, calls[1:], strict=False)]


def replay(runner: StandInRunner, batches: list[int], *, steps: int, width: int, height: int) -> float:
    """The pipeline alone: the stand-in called with these batch sizes back to back; images/s."""
    from inference.engine.generate import BatchKey, ImageTask
    from inference.engine.samplers import resolve

    key = BatchKey(model="stand-in", kind="txt2img", width=width, height=height, steps=steps,
                   sampler=resolve(None, None), cfg_scale=7.0)
    started = time.perf_counter()
    for size in batches:
        tasks = [ImageTask(prompt="", negative_prompt="", seed=i) for i in range(size)]
        assert len(runner(key, tasks)) == size
    return sum(batches) / (time.perf_counter() - started)


def response_png_kb(url: str, body: dict) -> float:
    """The size in KB of the PNG one request gets back from the server (decoded from base64)."""
    import httpx

    response = httpx.post(f"{url}/v1/txt2img", json={**body, "seed": 1}, timeout=600)
    response.raise_for_status()
    return len(base64.b64decode(response.json()["images"][0])) / 1000


def checkout(ref: str, folder: Path) -> Path:
    """`inference/` as of a git ref in `folder`, with this tree's `bench/` beside it (the
    stand-in), so `python -m bench.gpu_standin` there serves that ref's server code."""
    archive = subprocess.run(["git", "archive", ref, "inference"], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    (folder / "bench").symlink_to(REPO / "bench")
    return folder


class StandInServer:
    """One server under test: its URL, process, calls log, and the rounds measured on it."""

    def __init__(self, label: str, url: str, state: Path):
        self.label = label
        self.url = url
        self.pid = int((state / "pid").read_text())
        self.calls_log = state / "calls.log"
        self.seen = 0
        self.last_batches: list[int] = []
        self.rounds: list[dict] = []
        self.png_kb = 0.0

    def http(self, args, body: dict, index: int) -> dict:
        """One HTTP round; what it measured, the stand-in's calls during it included."""
        cpu_before, client_cpu_before = process_cpu_seconds(self.pid), time.process_time()
        round_started = time.perf_counter()
        result = http_round(self.url, args.clients, args.requests, body, seed_base=index * 1000)
        round_ended = time.perf_counter()
        server_cpu = process_cpu_seconds(self.pid) - cpu_before
        client_cpu = time.process_time() - client_cpu_before
        calls = read_calls(self.calls_log, self.seen)
        self.seen += len(calls)
        self.last_batches = [size for size, _, _ in calls]
        gaps = idle_gaps(calls)
        return {
            "http_images_per_s": result["images_per_s"], "p50_s": result["p50_s"], "p95_s": result["p95_s"],
            "mean_batch": sum(self.last_batches) / len(self.last_batches), "batches": self.last_batches,
            "server_cpu_ms_per_image": 1000 * server_cpu / result["images"],
            "client_cpu_ms_per_image": 1000 * client_cpu / result["images"],
            # Where the stand-in GPU waited: between calls, and at the round's edges (until
            # the first call starts, after the last one ends: the last responses' encoding).
            "idle_share": sum(gaps) / result["wall_s"],
            "idle_gap_ms_median": 1000 * statistics.median(gaps) if gaps else 0.0,
            "head_ms": 1000 * (calls[0][2] - round_started),
            "tail_ms": 1000 * (round_ended - calls[-1][2] - calls[-1][1]),
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--it-per-s", type=float, default=100.0, help="the GPU's it/s at batch 1, 512x512")
    parser.add_argument("--batch-scaling", type=float, default=2.2, help="batch 4's call time / batch 1's")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=512, help="width and height")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--images-per-request", type=int, default=1,
                        help="batch_size of each request (StableStudio sends 4)")
    parser.add_argument("--requests", type=int, default=8, help="requests per client per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-batch-size", type=int, default=4, help="the server's (bench.gpu's sd15-http uses 4)")
    parser.add_argument("--png-levels", default="",
                        help="comma-separated PNG compress levels: one server each, measured in the same rounds "
                             "(default: one server at the server's own level)")
    parser.add_argument("--baseline", metavar="GIT_REF",
                        help="also measure a server running inference/ as of this git ref (before a change), "
                             "in the same rounds")
    parser.add_argument("--json", type=Path, help="write every round's figures here")
    args = parser.parse_args(argv)
    try:
        levels: list[int | None] = [int(level) for level in args.png_levels.split(",") if level.strip()] or [None]
    except ValueError:
        parser.error(f"--png-levels: expected comma-separated integers, got {args.png_levels!r}")
    if not all(level is None or 0 <= level <= 9 for level in levels):
        parser.error(f"--png-levels: each level must be 0 to 9, got {args.png_levels!r}")

    from inference.imaging import PNG_COMPRESS_LEVEL

    model = GpuTime(args.it_per_s, args.batch_scaling, args.max_batch_size)
    local = runner_from(StandInSettings(args.it_per_s, args.batch_scaling, args.max_batch_size))
    width = height = args.size
    local.prepare(width, height)
    body = {"steps": args.steps, "cfg_scale": 7.0, "width": width, "height": height,
            "batch_size": args.images_per_request}
    flags = ["--model", "builtin:tiny", "--device", "cpu", "--max-batch-size", str(args.max_batch_size),
             "--queue-size", "64"]
    load_before = os.getloadavg()
    variants: list[tuple[str, int | None, str | None]] = [
        (f"PNG level {PNG_COMPRESS_LEVEL if level is None else level}{' (default)' if level is None else ''}", level, None)
        for level in levels
    ]
    if args.baseline:
        variants.insert(0, (f"{args.baseline} (baseline, its default PNG level)", None, args.baseline))
    servers: list[StandInServer] = []
    with ExitStack() as stack:
        for label, level, ref in variants:
            state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sd-standin-")))
            settings = StandInSettings(args.it_per_s, args.batch_scaling, args.max_batch_size, state_dir=str(state),
                                       png_compress_level=level)
            code = REPO if ref is None else checkout(ref, Path(stack.enter_context(tempfile.TemporaryDirectory())))
            url, _ready = stack.enter_context(
                timed_server(*flags, module="bench.gpu_standin", env={ENV: settings.to_env()}, cwd=code))
            servers.append(StandInServer(label, url, state))
        for server in servers:  # warm-up: connections, first encodes
            http_round(server.url, args.clients, 1, body, seed_base=10_000)
            server.png_kb = response_png_kb(server.url, body)
            server.seen = len(read_calls(server.calls_log, 0))
        for index in range(args.rounds):
            # Alternating order, so that a drift in the machine's load hits every side.
            for server in servers if index % 2 == 0 else servers[::-1]:
                row = {"round": index + 1, **server.http(args, body, index)}
                row["pipeline_images_per_s"] = replay(local, server.last_batches, steps=args.steps, width=width,
                                                      height=height)
                row["ratio"] = row["http_images_per_s"] / row["pipeline_images_per_s"]
                server.rounds.append(row)
                print(f"round {index + 1}, {server.label}: HTTP {row['http_images_per_s']:.2f} images/s, pipeline "
                      f"alone {row['pipeline_images_per_s']:.2f}, ratio {row['ratio']:.3f}, mean batch "
                      f"{row['mean_batch']:.2f}, server CPU {row['server_cpu_ms_per_image']:.1f} ms/image, GPU idle "
                      f"{100 * row['idle_share']:.1f}% between calls (median gap {row['idle_gap_ms_median']:.1f} ms), "
                      f"head {row['head_ms']:.0f} ms, tail {row['tail_ms']:.0f} ms", flush=True)
    load_after = os.getloadavg()

    print(f"\nmachine: {machine()}")
    print(f"load average (1, 5, 15 min) before: {' '.join(f'{v:.2f}' for v in load_before)}, "
          f"after: {' '.join(f'{v:.2f}' for v in load_after)}")
    print(f"stand-in GPU: {args.it_per_s:g} it/s at batch 1, batch 4 takes {args.batch_scaling:g}x batch 1's time "
          f"({model.images_per_s(1, args.steps):.2f} images/s at batch 1, "
          f"{model.images_per_s(args.max_batch_size, args.steps):.2f} at batch {args.max_batch_size}); "
          f"{width}x{height}, {args.steps} steps")
    print(f"server --max-batch-size {args.max_batch_size}, {args.clients} closed-loop clients x {args.requests} "
          f"requests per round, {args.rounds} rounds, each HTTP round followed by the pipeline alone at its "
          f"batches; medians of rounds\n")
    rows = []
    for server in servers:
        rounds = server.rounds

        def med(name: str, rounds=rounds) -> float:
            return median([r[name] for r in rounds])

        rows.append([
            server.label, f"{server.png_kb:.0f}", f"{med('http_images_per_s'):.2f}",
            f"{med('pipeline_images_per_s'):.2f}", f"**{med('ratio'):.3f}**",
            " ".join(f"{r['ratio']:.3f}" for r in rounds), f"{med('p50_s'):.3f}", f"{med('p95_s'):.3f}",
            f"{med('mean_batch'):.2f}", f"{100 * med('idle_share'):.1f}%", f"{med('server_cpu_ms_per_image'):.1f}",
        ])
    print(table(["server", "PNG KB", "HTTP images/s", "pipeline alone images/s", "ratio", "ratio by round",
                 "p50 s", "p95 s", "mean batch", "GPU idle between calls", "server CPU ms/image"], rows))
    print("\nratio: HTTP images/s / the pipeline alone at the batches that server formed (target >= 0.95)")
    print(f"client CPU (this process, {args.clients} threads) ms/image: "
          f"{median([r['client_cpu_ms_per_image'] for s in servers for r in s.rounds]):.1f}")
    if args.json:
        args.json.write_text(json.dumps({
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": machine(), "load_before": load_before, "load_after": load_after,
            "servers": [{"label": s.label, "png_level": level, "code": ref or "working tree", "rounds": s.rounds}
                        for s, (_label, level, ref) in zip(servers, variants, strict=True)],
        }, indent=1))


if __name__ == "__main__":
    main()
