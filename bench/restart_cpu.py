"""A restart on a warm compile cache, with and without precompiled forwards, on the CPU.

Two parts, both opt-in (`make bench-compile`; the compiles take minutes here):

1. `server`: the real server, `--compile max` (the preset that compiles on a CPU:
   inductor's C++ kernels) on `builtin:tiny`, spawn to ready. First with an empty compile
   cache (it compiles every warmed shape and saves it), then once with `--precompile off`
   (untimed: it fills the inductor entries dynamo's own compile reads, which the
   ahead-of-time compiles do not); then restarts on that cache, in alternating order,
   with `--precompile off` (inductor's caches only: dynamo traces each shape again) and
   `--precompile auto` (each shape's forward loaded from its file).
2. `sd15-trace`: what the restart skips on a real model: dynamo's trace of SD 1.5's UNet
   (the published architecture, random weights) at the server's warm-up batches, against
   loading the same forward precompiled. Dynamo's "eager" backend on both sides, so that
   no kernels are generated: the figures are the tracing and the loading alone (a GPU
   restart adds the kernels' load from the cache to either).

    python -m bench.restart_cpu [--parts server sd15-trace] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, machine, median, table, timed_server

FLAGS = ("--model", "builtin:tiny", "--compile", "max", "--max-batch-size", "1")


def server_part(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sd-restart-") as work:
        cache = Path(work)
        with timed_server(*FLAGS, cache_dir=cache, timeout=1800) as (_, cold):
            pass
        artifacts = sorted(path.name for path in cache.rglob("precompiled/*.aot"))
        print(f"empty compile cache: spawn to ready {cold:.1f}s; {len(artifacts)} precompiled forwards saved", flush=True)
        # Ahead-of-time compiles do not fill the inductor entries dynamo's own compile looks
        # up: a first --precompile off start compiles them (untimed), so the timed ones are restarts.
        with timed_server(*FLAGS, "--precompile", "off", cache_dir=cache, timeout=1800) as (_, filling):
            pass
        print(f"--precompile off on that cache, filling dynamo's entries: spawn to ready {filling:.1f}s", flush=True)
        walls: dict[str, list[float]] = {"off": [], "auto": []}
        log = cache / "server.log"
        for round_index in range(rounds):
            for setting in (("off", "auto") if round_index % 2 == 0 else ("auto", "off")):
                with timed_server(*FLAGS, "--precompile", setting, "--log-level", "info", cache_dir=cache,
                                  timeout=900, log_path=log) as (_, seconds):
                    pass
                walls[setting].append(seconds)
                said = re.search(r"precompiled forwards: (.*)", log.read_text(errors="replace"))
                print(f"round {round_index + 1}: --precompile {setting}: spawn to ready {seconds:.1f}s"
                      + (f" (server: precompiled forwards {said.group(1)})" if said else ""), flush=True)
    print(f"\nserver, {' '.join(FLAGS)}: {len(artifacts)} warmed shapes (UNet and VAE decoder), medians of {rounds}\n")
    print(table(
        ["start", "spawn to ready s"],
        [["empty compile cache (compiles, saves)", f"{cold:.1f}"],
         ["--precompile off, filling dynamo's inductor entries (a compile)", f"{filling:.1f}"],
         ["warm cache, --precompile off (dynamo traces)", f"{median(walls['off']):.1f}"],
         ["warm cache, --precompile auto (loads)", f"{median(walls['auto']):.1f}"]],
    ))


# The child process of the sd15-trace part: one phase per process, so a load is a fresh start.
CHILD = r"""
import json, sys, time, torch
from diffusers import UNet2DConditionModel
from inference.engine.precompiled import call_forward, serializable_guards
phase, batch, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if hasattr(torch._dynamo.config, "enable_aot_compile"):
    torch._dynamo.config.enable_aot_compile = True
torch.manual_seed(0)
unet = UNet2DConditionModel(cross_attention_dim=768, sample_size=64, attention_head_dim=8).eval()
unet.fuse_qkv_projections()
args = (unet, torch.randn(batch, 4, 64, 64), torch.tensor(500.0))
kwargs = {"encoder_hidden_states": torch.randn(batch, 77, 768), "return_dict": False}
with torch.no_grad():
    call_forward(*args, **kwargs)  # eager, once: the allocator and kernels warm
    started = time.perf_counter(); call_forward(*args, **kwargs); eager = time.perf_counter() - started
    started = time.perf_counter()
    if phase == "trace":
        torch.compile(call_forward, backend="eager", fullgraph=True, dynamic=False)(*args, **kwargs)
    elif phase == "save":
        function = torch.compile(call_forward, backend="eager", fullgraph=True, dynamic=False,
                                 options={"guard_filter_fn": serializable_guards}).aot_compile((args, kwargs))
        function.save_compiled_function(path)
        function(*args, **kwargs)
    else:
        with open(path, "rb") as file:
            function = torch.compiler.load_compiled_function(file)
        function(*args, **kwargs)
    first = time.perf_counter() - started
print(json.dumps({"first": first, "eager": eager}))
"""


def _child(phase: str, batch: int, path: Path) -> dict:
    output = subprocess.run([sys.executable, "-c", CHILD, phase, str(batch), str(path)], cwd=REPO, check=True,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    return json.loads(output.strip().splitlines()[-1])


def sd15_trace_part(rounds: int) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="sd-trace-") as work:
        for rows_in_batch in (2, 4):  # batch 1 and 2 with CFG
            path = Path(work) / f"unet-{rows_in_batch}.aot"
            _child("save", rows_in_batch, path)
            trace, load = [], []
            for round_index in range(rounds):
                for phase in (("trace", "load") if round_index % 2 == 0 else ("load", "trace")):
                    result = _child(phase, rows_in_batch, path)
                    # The first call less one eager call: what tracing (or loading) added.
                    (trace if phase == "trace" else load).append(result["first"] - result["eager"])
                    print(f"{rows_in_batch} rows, {phase}: +{result['first'] - result['eager']:.2f}s over eager",
                          flush=True)
            rows.append([str(rows_in_batch), f"{median(trace):.2f}", f"{median(load):.2f}",
                         f"{median(trace) / max(median(load), 1e-3):.0f}x"])
    print(f"\nSD 1.5 UNet (random weights, QKV fused, float32), 64x64 latents, dynamo's eager backend, "
          f"medians of {rounds}: seconds the first call adds over an eager call\n")
    print(table(["UNet rows", "dynamo traces s", "precompiled loads s", "trace / load"], rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=("server", "sd15-trace"), default=["server", "sd15-trace"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{machine()}; load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    started = time.monotonic()
    if "sd15-trace" in args.parts:
        sd15_trace_part(args.rounds)
    if "server" in args.parts:
        server_part(args.rounds)
    print(f"\n{time.monotonic() - started:.0f}s in all; load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
