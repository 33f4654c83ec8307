"""SD 1.5 (512x512) and SDXL (1024x1024) on a GPU: eager vs each compile mode, the server's
default path, HTTP with 8 clients vs the pipeline alone, cold start with an empty and a
warm compile cache. One run, about 8 minutes on an H100.

The architectures are built from their published configs (bench/gpu_configs.py) with
random weights: the same layers and FLOPs as the real models, no download. SD 1.5 is
also saved to disk (fp16 files, a byte-level tokenizer) so that a real
`python -m inference serve` loads it. Stages, in this order (each is skipped, with a
note, when its estimated time no longer fits `--budget-s`; the JSON is rewritten after
every row, so a run cut short keeps what it measured):

1. `sd15-eager`: fp16, SDPA, channels_last, VAE slicing (`--compile off`), batch 1 and 4.
   Then a preflight (seconds, `gpu_preflight.py`): a toy forward with the `auto` preset's
   settings compiled ahead of time, saved, loaded and run; where that fails, every server
   runs with `--precompile off` (a failed precompile would compile each shape twice). Its
   note also says whether a weight changed in place reaches the replayed CUDA graphs (what
   merged LoRA adapters rely on).
2. `sd15-http`: the server, `--compile auto --max-batch-size 4`, started with an EMPTY
   compile cache (time to ready: load + compile + warm-up of 512x512 x buckets 1, 2, 4);
   8 HTTP clients (images/s, p50/p95); stopped, started again on the now WARM cache
   (time to ready: the restart / second replica case, each shape's forward loaded
   precompiled).
3. `sd15-server`: the server's engine path in this process (`load_model` with
   `--compile auto`, then `run_bucketed`, the server worker's call), batch 1 and 4: the
   "pipeline alone" that HTTP is compared with, and the it/s target; each shape's forward
   is loaded precompiled from what the HTTP stage's server saved, as a restarted replica
   does. Then one note: the first call with DPM++ 2M (int64 timesteps) after Euler a,
   which must not recompile. Then `sd15-lora` (part of `sd15-server`, on its model):
   batch 1 with a rank-16 LoRA merged into the weights (it/s must equal the plain row's,
   no eager call) and the switch timed.
4. `sd15-nobatch`: the server again with `--max-batch-size 1`, 8 clients: the batching
   gain through HTTP. Then `sd15-eager-start`: spawn to ready with `--compile off` (the
   cold-start target without compilation, < 10 s), and `sd15-server-traced`: batch 1 on
   the server path with `--precompile off` (dynamo's own compiled forwards, compiled here:
   inductor's cache entries of the two paths differ), which must be as fast as the
   precompiled row.
5. `sdxl-eager`, 6. `sdxl-server` (the `auto` preset applied to the built pipeline).
7. `sd15-sweep`: compile candidates at SD 1.5 batch 1 on the server path's pipeline
   (QKV fused, channels_last): inductor without CUDA graphs; reduce-overhead without
   fullgraph; CUDA graphs captured outside inductor (around an inductor-compiled and
   around an eager UNet); then max-autotune without and with CUDA graphs (the
   `--compile max` preset; the slowest to compile).
8. `sd15-restart-traced`: the server twice more with `--precompile off`: a start that
   fills dynamo's own inductor entries, then the warm restart with them (dynamo traces
   every shape): against `sd15-http`'s warm restart, what precompiled forwards save.
9. `sd15-fp32`, `sdxl-fp32`: the plain baseline, diffusers' defaults in float32, batch 1
   (last: the targets need it least).

it/s is the denoising rate from the difference of two whole calls (`--steps` and
`--short-steps` steps): text encoding, VAE decode and image conversion cancel out, and
no step is synchronised on its own. images/s is batch / the median wall time of a
`--steps` call. Every row says how long its first call (compile, capture) took.

    python -m bench.gpu --out bench/results/h100-fast-path.json     # on a CUDA machine (bench/gpu_wheels.sh)
    python -m bench.gpu --smoke --out /tmp/smoke.json                 # tiny configs on the CPU
    python -m bench.gpu --report bench/results/h100-fast-path.json    # the tables again

This file is the command line and the run's stages in order; `gpu_harness.py` holds the
`Bench` (budget, results, building, timing), `gpu_server.py` the HTTP / cold-start stages
and `gpu_sweep.py` the compile sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from . import gpu_configs
from .gpu_harness import EAGER, ESTIMATES, PLAIN_FP32, SERVER, SERVER_LORA, SERVER_TRACED, Bench
from .gpu_preflight import precompile_works
from .gpu_server import eager_start_stage, http_stage, nobatch_stage, traced_restart_stage
from .gpu_sweep import sweep

# The stages that use the built-and-saved SD 1.5 (the fp32 baseline builds its own).
SD15_PIPELINE_STAGES = ("sd15-eager", "sd15-http", "sd15-server", "sd15-lora", "sd15-nobatch", "sd15-eager-start",
                        "sd15-server-traced", "sd15-sweep", "sd15-restart-traced")


def run(bench: Bench) -> None:
    """The stages in the order the module docstring lists them; the tables printed at the end.

    Every step runs through `bench.attempt`: one that raises is recorded in the JSON's notes
    and the run goes on with the next stage that does not depend on it.
    """
    smoke = bench.args.smoke
    sd15, sdxl = (gpu_configs.SD15_SMOKE, gpu_configs.SDXL_SMOKE) if smoke else (gpu_configs.SD15, gpu_configs.SDXL)
    folder = bench.work / "sd15-random"
    inductor_dir = bench.work / "inductor-cache"
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(inductor_dir)  # shared with the servers it starts
    model = None
    try:
        # A second call for a few stages (`--stages`) builds SD 1.5 only when one of them needs it.
        sd15_needed = not bench.args.stages or bool(set(bench.args.stages) & set(SD15_PIPELINE_STAGES))
        saved = sd15_needed and sd15_eager_and_saved(bench, sd15, folder)
        if sd15_needed and not saved:
            bench.note("SD 1.5 server stages skipped: no saved model for the server")
        if saved and (not smoke or bench.args.smoke_compile):
            preflight = bench.attempt("the precompile preflight", precompile_works, bench.device, bench.dtype)
            bench.precompile = bool(preflight and preflight[0])
            bench.note(f"precompile preflight: {preflight[1] if preflight else 'raised'}"
                       + ("" if bench.precompile else "; the servers run with --precompile off"))
        if saved and bench.fits("sd15-http"):
            bench.attempt("HTTP and cold starts", http_stage, bench, folder, sd15, inductor_dir)
        if saved and bench.fits("sd15-server"):
            model = bench.attempt("loading the server path", bench.load_server_path, folder,
                                  precompiled=inductor_dir / "precompiled" if bench.precompile else None)
            if model is not None:
                bench.note(f"server path: {model.fast_path.summary()}")
                call = bench.engine_caller(model, sd15["resolution"])
                for batch in (1, 4):
                    bench.attempt(f"{sd15['name']} server path batch {batch}", bench.measure, call, sd15, SERVER, batch,
                                  path="engine", precompile="auto" if bench.precompile else "off")
                store = model.compiled_shapes.precompiled_store
                bench.note(f"server path precompiled forwards: {store.summary() if store else 'none'}")
                bench.attempt("another sampler on the compiled path", sampler_switch, bench, model, sd15)
                if bench.fits("sd15-lora"):
                    bench.attempt("a LoRA batch on the server path", lora_batches, bench, model, sd15)
        if saved and bench.fits("sd15-nobatch"):
            bench.attempt("HTTP without batching", nobatch_stage, bench, folder, sd15, inductor_dir)
        if saved and bench.fits("sd15-eager-start"):
            bench.attempt("cold start without compilation", eager_start_stage, bench, folder, sd15)
        if saved and bench.fits("sd15-server-traced"):
            bench.attempt("the server path traced (--precompile off)", traced_server_path, bench, folder, sd15)
        bench.attempt(f"{sdxl['name']} stages", sdxl_stages, bench, sdxl)
        if model is not None and (not smoke or bench.args.smoke_compile):
            bench.attempt("the compile sweep", sweep, bench, model, sd15)
        if saved and bench.fits("sd15-restart-traced"):
            bench.attempt("warm restart with --precompile off", traced_restart_stage, bench, folder, sd15, inductor_dir)
        model = None
        bench.free()
        bench.attempt("plain fp32 baselines", fp32_baselines, bench, sd15, sdxl)
    finally:
        bench.save()
        print()
        print(report(bench.payload()))


def traced_server_path(bench: Bench, folder, arch: dict) -> None:
    """Batch 1 on the server path with `--precompile off` (dynamo's own compiled forwards),
    beside the precompiled rows: precompiled forwards must be as fast (the same kernels and
    CUDA graphs); a gap here means the saved artifact lost something on the way."""
    model = bench.load_server_path(folder)
    try:
        call = bench.engine_caller(model, arch["resolution"])
        bench.measure(call, arch, SERVER_TRACED, 1, path="engine", precompile="off")
    finally:
        del model
        bench.free()


def sampler_switch(bench: Bench, model, arch: dict) -> None:
    """The first call with DPM++ 2M (int64 timesteps) after the compiled path ran Euler a
    (float32 ones): as fast as the next ones when every sampler shares the compiled graphs
    (engine/compiled_shapes.py), about a compile slower when the sampler recompiles."""
    call = bench.engine_caller(model, arch["resolution"], sampler="DPM++ 2M")
    graphs_before = model.compiled_shapes.compiled_count("unet")
    first = call(1, bench.args.steps)
    steady = statistics.median(call(1, bench.args.steps) for _ in range(3))
    bench.note(
        f"{arch['name']} DPM++ 2M after Euler a, batch 1: first call {first:.2f}s, then {steady:.2f}s"
        f" (compiled UNet shapes {graphs_before} -> {model.compiled_shapes.compiled_count('unet')},"
        f" eager calls {model.compiled_shapes.eager_calls or 0})"
    )


def lora_batches(bench: Bench, model, arch: dict) -> None:
    """Batch 1 on the server path with a rank-16 LoRA on the attention projections (random,
    made with PEFT and taken out of the UNet as the server does): merged into the weights
    (inference/engine/lora_merge.py), it runs the warmed graphs, so "LoRA / plain" must be
    about 1.0 with no eager call; and the switch, timed both ways. The model's weights are
    exactly the plain ones again afterwards (the sweep uses it)."""
    from inference.engine.lora import LoraSpec
    from inference.engine.lora_merge import UnetAdapters

    from .lora_merge_cpu import add_random_attention_lora

    add_random_attention_lora(model.text2img.unet, rank=16)
    adapters = UnetAdapters.take_from(model.text2img.unet)
    model.loras, model.unet_adapters = {"style": LoraSpec(source="random", name="style")}, adapters
    try:
        def switch(active) -> float:
            bench.sync()
            started = time.perf_counter()
            adapters.apply(active)
            bench.sync()
            return time.perf_counter() - started

        merges, restores = [], []
        for _ in range(5):
            merges.append(switch((("style", 0.8),)))
            restores.append(switch(()))
        eager_before = sum(model.compiled_shapes.eager_calls.values())
        call = bench.engine_caller(model, arch["resolution"], adapters=(("style", 0.8, 0.8),))
        bench.measure(call, arch, SERVER_LORA, 1, path="engine")
        eager_calls = sum(model.compiled_shapes.eager_calls.values()) - eager_before
        bench.note(
            f"{arch['name']} LoRA (rank 16, {adapters.weight_count} weights, originals {adapters.kept_bytes / 2**20:.0f}"
            f" MiB): switch to it {statistics.median(merges) * 1000:.1f} ms, back {statistics.median(restores) * 1000:.1f}"
            f" ms (medians of 5); eager calls during its batches: {eager_calls}"
        )
    finally:
        adapters.apply(())
        model.loras, model.unet_adapters = {}, None


def sd15_eager_and_saved(bench: Bench, arch: dict, folder: Path) -> bool:
    """Stage 1 on a built SD 1.5, then the model folder the server stages load; whether saved."""
    pipe = bench.attempt(f"building {arch['name']}", bench.build, arch)
    if pipe is None:
        return False
    if bench.fits("sd15-eager"):
        call = bench.pipe_caller(pipe, arch)
        for batch in (1, 4):
            bench.attempt(f"{arch['name']} eager batch {batch}", bench.measure, call, arch, EAGER, batch, path="pipeline")
    saved = bench.attempt("saving the model for the server", bench.save_for_server, pipe, folder) is not None
    del pipe
    bench.free()
    return saved


def sdxl_stages(bench: Bench, arch: dict) -> None:
    if not (bench.fits("sdxl-eager") or bench.fits("sdxl-server")):
        return
    from inference.engine.fast_path import apply_fast_path, choose_fast_path

    pipe = bench.attempt(f"building {arch['name']}", bench.build, arch)
    if pipe is None:
        return
    call = bench.pipe_caller(pipe, arch)
    if bench.fits("sdxl-eager"):
        for batch in (1, 4):
            bench.attempt(f"{arch['name']} eager batch {batch}", bench.measure, call, arch, EAGER, batch, path="pipeline")
    if bench.fits("sdxl-server") and (not bench.args.smoke or bench.args.smoke_compile):
        config = choose_fast_path("auto", bench.device, max_batch_size=4)
        applied = bench.attempt(f"{arch['name']}: applying the fast path", apply_fast_path, pipe, config)
        if applied is None:
            return
        bench.note(f"{arch['name']}: {applied.summary()}")
        for batch in (1, 4):
            if batch == 4 and not bench.fits("sdxl-server", 110):
                continue
            bench.attempt(f"{arch['name']} server path batch {batch}", bench.measure, call, arch, SERVER, batch,
                          path="pipeline")
    del pipe


def fp32_baselines(bench: Bench, sd15: dict, sdxl: dict) -> None:
    """Stage 8: diffusers' defaults in float32 (no channels_last, no VAE slicing), batch 1:
    the plain baseline the published "plain PyTorch" figures are set against. Last, as the
    targets need it least; each model is built again for it."""
    for arch, stage in ((sd15, "sd15-fp32"), (sdxl, "sdxl-fp32")):
        if not bench.fits(stage):
            continue
        pipe = bench.attempt(f"building {arch['name']} in plain fp32", bench.build, arch, plain_fp32=True)
        if pipe is None:
            continue
        bench.attempt(f"{arch['name']} plain fp32 batch 1", bench.measure, bench.pipe_caller(pipe, arch), arch,
                      PLAIN_FP32, 1, path="pipeline")
        del pipe
        bench.free()


def report(data: dict) -> str:
    from .common import table

    env = data.get("environment", {})
    lines = [f"device: {env.get('device')}, torch {env.get('torch')}, diffusers {env.get('diffusers')}, "
             f"{env.get('steps')} steps (it/s from {env.get('steps')} - {env.get('short_steps', '?')} steps), CFG 7", ""]
    rows = data.get("rows", [])
    if rows:
        body = [[r["model"], f"{r['resolution']}x{r['resolution']}", r["mode"], r["batch"],
                 "-" if r.get("it_per_s") is None else f"{r['it_per_s']:.2f}", f"{r['images_per_s']:.3f}",
                 "-" if r.get("peak_gib") is None else f"{r['peak_gib']:.1f}",
                 f"{r.get('first_call_s', r.get('warmup_s', 0)):.1f}"] for r in rows]
        lines.append(table(["model", "size", "mode", "batch", "it/s", "images/s", "peak GiB", "first call s"], body))
        lines.append("")
        by_key = {(r["model"], r["mode"], r["batch"]): r for r in rows}
        for model in dict.fromkeys(r["model"] for r in rows):
            for batch in (1, 4):
                eager, fast = by_key.get((model, EAGER, batch)), by_key.get((model, SERVER, batch))
                if eager and fast and eager.get("it_per_s") and fast.get("it_per_s"):
                    lines.append(f"{model} batch {batch}: server default / eager = "
                                 f"{fast['it_per_s'] / eager['it_per_s']:.2f}x it/s, "
                                 f"{fast['images_per_s'] / eager['images_per_s']:.2f}x images/s")
            lora, fast = by_key.get((model, SERVER_LORA, 1)), by_key.get((model, SERVER, 1))
            if lora and fast and lora.get("it_per_s") and fast.get("it_per_s"):
                lines.append(f"{model} batch 1: a LoRA merged / plain = {lora['it_per_s'] / fast['it_per_s']:.3f}x it/s")
            traced, fast = by_key.get((model, SERVER_TRACED, 1)), by_key.get((model, SERVER, 1))
            if traced and fast and traced.get("it_per_s") and fast.get("it_per_s"):
                lines.append(f"{model} batch 1: precompiled forwards / dynamo's (--precompile off) = "
                             f"{fast['it_per_s'] / traced['it_per_s']:.3f}x it/s")
            plain, fast = by_key.get((model, PLAIN_FP32, 1)), by_key.get((model, SERVER, 1))
            if plain and fast and plain.get("it_per_s") and fast.get("it_per_s"):
                lines.append(f"{model} batch 1: server default / plain fp32 = "
                             f"{fast['it_per_s'] / plain['it_per_s']:.2f}x it/s")
    http = data.get("http", [])
    if http:
        lines += ["", table(["model", "max batch", "clients", "images/s", "p50 s", "p95 s", "mean batch"],
                            [[h["model"], h["max_batch_size"], h["clients"], f"{h['images_per_s']:.3f}", f"{h['p50_s']:.2f}",
                              f"{h['p95_s']:.2f}", "-" if h.get("mean_batch") is None else f"{h['mean_batch']:.2f}"]
                             for h in http])]
        pipeline = {r["model"]: r for r in rows if r["mode"] == SERVER and r["batch"] == 4}
        batched = {h["model"]: h for h in http if h["max_batch_size"] == 4}
        single = {h["model"]: h for h in http if h["max_batch_size"] == 1}
        for model, h in batched.items():
            if model in pipeline:
                lines.append(f"{model}: HTTP (8 clients) / pipeline alone (server path, batch 4) images/s = "
                             f"{h['images_per_s'] / pipeline[model]['images_per_s']:.3f}")
            if model in single:
                lines.append(f"{model}: batching gain through HTTP (max batch 4 / max batch 1) = "
                             f"{h['images_per_s'] / single[model]['images_per_s']:.2f}x")
    starts = data.get("cold_starts", [])
    if starts:
        lines += ["", table(["model", "compile cache", "precompile", "spawn to ready (s)", "sd_startup_seconds"],
                            [[s["model"], s["cache"], s.get("precompile", "-"), f"{s['seconds_to_ready']:.1f}",
                              s.get("startup_metric_s")] for s in starts])]
    if data.get("notes"):
        lines += ["", "notes:", *("  " + note for note in data["notes"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny configs on the CPU, to test this script")
    parser.add_argument("--smoke-compile", action="store_true", help="with --smoke: also the compile stages (slow on a CPU)")
    parser.add_argument("--out", type=Path, help="write the raw results as JSON here")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--short-steps", type=int, default=5, help="the shorter call it/s is differenced against")
    parser.add_argument("--reps", type=int, default=3, help="timed calls per step count and point")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--http-requests", type=int, default=4, help="requests per client in the timed HTTP round")
    parser.add_argument("--budget-s", type=float, default=470, help="skip stages that would not fit")
    parser.add_argument("--server-timeout-s", type=float, default=420,
                        help="the most a server may take to be ready (never more than the budget left)")
    parser.add_argument("--server-logs", type=Path, help="write each server's log here (default: temporary files)")
    parser.add_argument("--stages", nargs="*", choices=sorted(ESTIMATES), help="only these stages")
    parser.add_argument("--work-dir", type=Path, help="model folder and caches (default: a new temporary directory)")
    parser.add_argument("--report", type=Path, help="print the tables of an earlier --out file and exit")
    args = parser.parse_args(argv)
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return
    if args.smoke:
        args.steps, args.short_steps, args.reps = min(args.steps, 4), min(args.short_steps, 2), 1
    # Everything is built or saved locally; a lent GPU machine reaches no network, where a
    # Hub lookup would wait for its timeout instead of failing at once.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _quiet_libraries()
    run(Bench(args))


def _quiet_libraries() -> None:
    """diffusers warns on every fp16 cast and SDXL VAE upcast; the table is what matters."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()


if __name__ == "__main__":
    main()
