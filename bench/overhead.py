"""Serving overhead: HTTP end-to-end latency / direct pipeline call (target <= 1.05).

Same model, same parameters (the seed API's defaults for builtin:tiny: 64x64, 20 steps,
the default sampler and CFG), same machine, measured in one run with the two interleaved
call by call, so background load hits both alike. The server runs with its defaults
(batching on, 15 ms window), as deployed. The direct call is the diffusers pipeline
itself, with the same scheduler, producing a PIL image; the HTTP path adds validation,
queueing, PNG encoding, base64, JSON and the loopback round trip. A third row, from the
server's own /metrics, is the mean time of the pipeline call inside the server: it splits
the overhead into "the same call runs slower in the server" and "around the call".

    python -m bench.overhead [--rounds 15] [--model builtin:tiny]
"""

from __future__ import annotations

import argparse
import time

import httpx

from .common import DEFAULT_CACHE, machine, median, server, table


def direct_caller(model: str, cache_dir, steps: int, cfg: float):
    import torch

    from inference.engine.loading import load_model
    from inference.engine.samplers import build_scheduler, resolve

    loaded = load_model(model, cache_dir=cache_dir)
    pipe = loaded.text2img
    width, height = loaded.native_size
    sampler = resolve(None, None)

    def call(seed: int) -> None:
        pipe.scheduler = build_scheduler(sampler, loaded.scheduler_config)
        with torch.inference_mode():
            pipe(
                prompt=["a lighthouse at dusk"],
                negative_prompt=[""],
                num_inference_steps=steps,
                guidance_scale=cfg,
                width=width,
                height=height,
                generator=[torch.Generator("cpu").manual_seed(seed)],
                output_type="pil",
            )

    return call


def server_pipeline_seconds(client: httpx.Client) -> tuple[float, float]:
    """(seconds spent in pipeline calls, number of calls) from the server's /metrics."""
    values = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(("sd_generation_seconds_total ", "sd_batch_size_count ")):
            name, value = line.split()
            values[name] = float(value)
    return values.get("sd_generation_seconds_total", 0.0), values.get("sd_batch_size_count", 0.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:tiny")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=7.0)
    args = parser.parse_args(argv)

    direct = direct_caller(args.model, DEFAULT_CACHE, args.steps, args.cfg)
    body = {"prompt": "a lighthouse at dusk", "steps": args.steps, "cfg_scale": args.cfg}
    with server("--model", args.model) as url, httpx.Client(base_url=url, timeout=300) as client:

        def http(seed: int) -> None:
            response = client.post("/v1/txt2img", json={**body, "seed": seed})
            response.raise_for_status()
            assert response.json()["images"]

        for seed in range(2):  # warm-up: first calls pay for lazy initialisation
            direct(seed)
            http(seed)
        direct_s, http_s = [], []
        before = server_pipeline_seconds(client)
        for seed in range(args.rounds):
            for call, into in ((direct, direct_s), (http, http_s)) if seed % 2 else ((http, http_s), (direct, direct_s)):
                started = time.perf_counter()
                call(seed)
                into.append(time.perf_counter() - started)
        after = server_pipeline_seconds(client)
        inside_mean = (after[0] - before[0]) / max(1, after[1] - before[1])

    ratio = median(http_s) / median(direct_s)
    print(f"machine: {machine()}")
    print(f"model {args.model}, {args.steps} steps, CFG {args.cfg}, {args.rounds} interleaved rounds, medians\n")
    print(
        table(
            ["path", "median latency (ms)", "min (ms)", "max (ms)"],
            [
                ["direct pipeline call", f"{median(direct_s) * 1000:.1f}", f"{min(direct_s) * 1000:.1f}",
                 f"{max(direct_s) * 1000:.1f}"],
                ["HTTP end to end", f"{median(http_s) * 1000:.1f}", f"{min(http_s) * 1000:.1f}", f"{max(http_s) * 1000:.1f}"],
                ["(pipeline call inside the server, mean)", f"{inside_mean * 1000:.1f}", "", ""],
            ],
        )
    )
    print(f"\noverhead ratio (HTTP / direct, medians): {ratio:.3f}  (target <= 1.05: {'met' if ratio <= 1.05 else 'NOT met'})")


if __name__ == "__main__":
    main()
