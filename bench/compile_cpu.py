"""Compile vs eager on the CPU, `builtin:tiny`: what `--compile max` (inductor's C++ code,
`max-autotune-no-cudagraphs`) gives where `auto` stays eager.

Both pipelines load through `load_model` with the fast path the server would apply;
the calls are the server worker's own (`run_bucketed`). Reported: the first call (the
compile), it/s from the difference of two step counts, images/s, and how far the
compiled images are from the eager ones (inductor reorders floating-point sums, so they
are close, not equal). Opt-in (`make bench-compile`): the compile takes minutes here.

    python -m bench.compile_cpu [--steps 20] [--reps 5] [--batch 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

from .common import DEFAULT_CACHE, machine, table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:tiny")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--short-steps", type=int, default=5)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args(argv)

    import numpy as np

    from inference.engine.fast_path import choose_fast_path
    from inference.engine.generate import BatchKey, ImageTask
    from inference.engine.loading import choose_device, load_model
    from inference.engine.padded import run_bucketed
    from inference.engine.samplers import resolve

    device = choose_device("cpu")
    models = {
        mode: load_model(args.model, cache_dir=DEFAULT_CACHE, device=device,
                         fast_path=choose_fast_path(mode, "cpu", max_batch_size=args.batch))
        for mode in ("off", "max")
    }
    width, height = models["off"].native_size
    tasks = [ImageTask(prompt=f"prompt {i}", negative_prompt="", seed=i) for i in range(args.batch)]

    def call(mode: str, steps: int):
        key = BatchKey(model=models[mode].name, kind="txt2img", width=width, height=height, steps=steps,
                       sampler=resolve(None, None), cfg_scale=7.0)
        started = time.perf_counter()
        images = run_bucketed(models[mode], key, tasks)
        return time.perf_counter() - started, images

    first = {mode: call(mode, 3)[0] for mode in models}
    walls: dict[str, dict[int, list[float]]] = {mode: {args.steps: [], args.short_steps: []} for mode in models}
    images = {}
    for rep in range(args.reps):  # interleaved, so background load hits both
        for mode in (("off", "max") if rep % 2 == 0 else ("max", "off")):
            for steps in (args.steps, args.short_steps):
                seconds, made = call(mode, steps)
                walls[mode][steps].append(seconds)
                if steps == args.steps:
                    images[mode] = made
    rows, rate = [], {}
    for mode in models:
        long, short = statistics.median(walls[mode][args.steps]), statistics.median(walls[mode][args.short_steps])
        rate[mode] = (args.steps - args.short_steps) / (long - short) if long > short else float("nan")
        rows.append([f"--compile {mode}" + (" (eager)" if mode == "off" else " (inductor, max-autotune-no-cudagraphs)"),
                     f"{first[mode]:.1f}", f"{rate[mode]:.2f}", f"{args.batch / long:.3f}"])
    difference = max(
        int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())
        for a, b in zip(images["off"], images["max"], strict=True)
    )
    print(f"machine: {machine()}")
    print(f"model {args.model}, {width}x{height}, batch {args.batch}, {args.steps} steps (it/s from {args.steps} - "
          f"{args.short_steps} steps), CFG 7, {args.reps} interleaved reps, medians\n")
    print(table(["mode", "first call s (compile)", "it/s", "images/s"], rows))
    print(f"\ncompiled / eager it/s: {rate['max'] / rate['off']:.2f}x; largest pixel difference compiled vs eager: "
          f"{difference} of 255")


if __name__ == "__main__":
    main()
