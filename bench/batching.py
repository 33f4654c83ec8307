"""Batching throughput: 8 concurrent clients, batching on (max batch 8) vs off (max batch 1).

Two real servers (`python -m inference serve`) with the same model, side by side in one
run; rounds alternate between them (on, off, on, off, ...) so background load hits both
alike, and the table reports medians over rounds. Each round, 8 client threads each send
`--requests` txt2img requests back to back (default parameters for builtin:tiny: 64x64,
20 steps), and throughput is images / wall time of the round. Target on CPU with
builtin:tiny: on / off >= 1.4.

    python -m bench.batching [--rounds 3] [--clients 8] [--requests 3]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx

from .common import machine, median, server, table


def one_round(url: str, clients: int, requests: int, round_index: int) -> float:
    """Images per second for `clients` closed-loop clients sending `requests` each."""

    def client_loop(client_index: int) -> int:
        with httpx.Client(base_url=url, timeout=600) as client:
            for i in range(requests):
                seed = ((round_index + 1) * clients + client_index) * requests + i  # warm-up is round -1
                response = client.post("/v1/txt2img", json={"prompt": f"client {client_index}", "seed": seed})
                response.raise_for_status()
                assert len(response.json()["images"]) == 1
        return requests

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        images = sum(pool.map(client_loop, range(clients)))
    return images / (time.perf_counter() - started)


def batch_sizes(url: str) -> str:
    """Mean images per pipeline call, from the server's own sd_batch_size histogram."""
    text = httpx.get(f"{url}/metrics").text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("sd_batch_size_")}
    count = values.get("sd_batch_size_count", 0)
    return f"{values.get('sd_batch_size_sum', 0) / count:.2f}" if count else "-"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:tiny")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3, help="requests per client per round")
    parser.add_argument("--batch-window-ms", default="15", help="the server default")
    args = parser.parse_args(argv)

    configs = {"on": "8", "off": "1"}
    with ExitStack() as stack:
        urls = {
            name: stack.enter_context(
                server("--model", args.model, "--max-batch-size", size, "--queue-size", "64",
                       "--batch-window-ms", args.batch_window_ms)
            )
            for name, size in configs.items()
        }
        for url in urls.values():  # warm-up, outside the measurement
            one_round(url, args.clients, 1, -1)
        rates: dict[str, list[float]] = {name: [] for name in configs}
        for round_index in range(args.rounds):
            order = ("on", "off") if round_index % 2 == 0 else ("off", "on")
            for name in order:
                rates[name].append(one_round(urls[name], args.clients, args.requests, round_index))
                print(f"round {round_index + 1} batching {name}: {rates[name][-1]:.2f} images/s", flush=True)
        mean_batch = {name: batch_sizes(url) for name, url in urls.items()}

    ratio = median(rates["on"]) / median(rates["off"])
    print(f"\nmachine: {machine()}")
    print(f"model {args.model}, {args.clients} concurrent clients x {args.requests} requests per round, "
          f"{args.rounds} alternating rounds, medians\n")
    print(
        table(
            ["batching", "max batch size", "images/s (median)", "rounds", "mean images per pipeline call"],
            [[name, configs[name], f"{median(rates[name]):.2f}", " ".join(f"{r:.2f}" for r in rates[name]), mean_batch[name]]
             for name in configs],
        )
    )
    print(f"\nthroughput ratio (on / off, medians): {ratio:.2f}  (target >= 1.4: {'met' if ratio >= 1.4 else 'NOT met'})")


if __name__ == "__main__":
    main()
