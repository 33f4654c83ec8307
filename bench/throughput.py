"""Throughput through the server vs the pipeline alone: images/s with 8 HTTP clients
against images/s of the server's own engine call (`run_bucketed`, the function the
server's worker runs) at the batch size those clients form, in one process, no HTTP.

The ratio (HTTP / pipeline, target >= 0.95) is what the server costs around the pipeline
at full load: queueing, PNG encoding and base64 (on a thread pool, off the event loop),
JSON, the loopback. Both sides run the same model, size, steps, sampler and CFG; the
rounds alternate so background load hits both.

    python -m bench.throughput [--model builtin:tiny] [--size 64] [--clients 8] [--rounds 3]

`bench.gpu` calls `http_round` and `engine_images_per_s` for its GPU rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from .common import DEFAULT_CACHE, machine, median, server, table


def http_round(url: str, clients: int, requests: int, body: dict, seed_base: int = 0) -> dict:
    """`clients` closed-loop clients send `requests` txt2img each (of `body["batch_size"]`
    images, 1 by default); images/s and latencies."""
    latencies: list[float] = []
    per_request = int(body.get("batch_size", 1))
    # Made before the clock starts: an httpx.Client takes about 15 ms of CPU to make (its
    # SSL context), under the GIL, which is the client's cost, not the server's.
    sessions = [httpx.Client(base_url=url, timeout=600) for _ in range(clients)]

    def client_loop(client_index: int) -> int:
        client = sessions[client_index]
        for i in range(requests):
            seed = seed_base + client_index * requests + i
            started = time.perf_counter()
            response = client.post("/v1/txt2img", json={**body, "seed": seed, "prompt": f"client {client_index}"})
            response.raise_for_status()
            assert len(response.json()["images"]) == per_request
            latencies.append(time.perf_counter() - started)
        return requests * per_request

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            images = sum(pool.map(client_loop, range(clients)))
        wall = time.perf_counter() - started
    finally:
        for session in sessions:
            session.close()
    ordered = sorted(latencies)
    return {
        "images_per_s": images / wall,
        "p50_s": statistics.median(ordered),
        "p95_s": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "images": images,
        "wall_s": wall,
    }


def mean_batch(url: str) -> float | None:
    """Mean images per pipeline call so far, from the server's sd_batch_size histogram."""
    text = httpx.get(f"{url}/metrics").text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("sd_batch_size_")}
    count = values.get("sd_batch_size_count", 0)
    return values.get("sd_batch_size_sum", 0) / count if count else None


def engine_caller(model, *, width: int, height: int, steps: int, cfg: float, sync=lambda: None):
    """A function (batch) -> seconds for one call of the server's engine path."""
    from inference.engine.generate import BatchKey, ImageTask
    from inference.engine.padded import run_bucketed
    from inference.engine.samplers import resolve

    key = BatchKey(model=model.name, kind="txt2img", width=width, height=height, steps=steps,
                   sampler=resolve(None, None), cfg_scale=cfg)

    def call(batch: int, seed: int = 0) -> float:
        tasks = [ImageTask(prompt=f"client {i}", negative_prompt="", seed=seed + i) for i in range(batch)]
        sync()
        started = time.perf_counter()
        images = run_bucketed(model, key, tasks)
        sync()
        assert len(images) == batch
        return time.perf_counter() - started

    return call


def engine_images_per_s(call, batch: int, reps: int) -> float:
    walls = [call(batch, seed=rep * batch) for rep in range(reps)]
    return batch / statistics.median(walls)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:tiny")
    parser.add_argument("--size", type=int, default=0, help="width and height (0: the model's native size)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=7.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3, help="requests per client per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from inference.engine.loading import choose_device, load_model

    model = load_model(args.model, cache_dir=DEFAULT_CACHE, device=choose_device("cpu"))
    width, height = (args.size, args.size) if args.size else model.native_size
    call = engine_caller(model, width=width, height=height, steps=args.steps, cfg=args.cfg)
    body = {"steps": args.steps, "cfg_scale": args.cfg, "width": width, "height": height}
    batch = args.clients  # 8 closed-loop clients fill batches of up to 8
    http_rates, engine_rates, p50s, p95s = [], [], [], []
    with server("--model", args.model, "--max-batch-size", str(batch), "--queue-size", "64") as url:
        http_round(url, args.clients, 1, body, seed_base=10_000)  # warm-up
        call(batch)
        for round_index in range(args.rounds):
            sides = ("http", "engine") if round_index % 2 == 0 else ("engine", "http")
            for side in sides:
                if side == "http":
                    result = http_round(url, args.clients, args.requests, body, seed_base=round_index * 1000)
                    http_rates.append(result["images_per_s"])
                    p50s.append(result["p50_s"])
                    p95s.append(result["p95_s"])
                else:
                    engine_rates.append(engine_images_per_s(call, batch, max(1, args.requests)))
                rate = (http_rates if side == "http" else engine_rates)[-1]
                print(f"round {round_index + 1} {side}: {rate:.2f} images/s", flush=True)
        batches = mean_batch(url)

    ratio = median(http_rates) / median(engine_rates)
    print(f"\nmachine: {machine()}")
    print(f"model {args.model}, {width}x{height}, {args.steps} steps, CFG {args.cfg}, {args.clients} clients x "
          f"{args.requests} requests per round, {args.rounds} alternating rounds, medians\n")
    print(table(
        ["path", "images/s (median)", "rounds", "p50 latency (s)", "p95 latency (s)"],
        [
            ["HTTP, 8 clients", f"{median(http_rates):.2f}", " ".join(f"{r:.2f}" for r in http_rates),
             f"{median(p50s):.2f}", f"{median(p95s):.2f}"],
            [f"engine alone, batch {batch}", f"{median(engine_rates):.2f}", " ".join(f"{r:.2f}" for r in engine_rates), "", ""],
        ],
    ))
    print(f"\nmean images per pipeline call in the server: {batches:.2f}" if batches else "")
    verdict = "met" if ratio >= 0.95 else "NOT met"
    print(f"throughput ratio (HTTP / engine alone, medians): {ratio:.3f}  (target >= 0.95: {verdict})")


if __name__ == "__main__":
    main()
