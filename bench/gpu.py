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
2. `sd15-http`: the server, `--compile auto --max-batch-size 4`, started with an EMPTY
   compile cache (time to ready: load + compile + warm-up of 512x512 x buckets 1, 2, 4);
   8 HTTP clients (images/s, p50/p95); stopped, started again on the now WARM cache
   (time to ready: the restart / second replica case).
3. `sd15-server`: the server's engine path in this process (`load_model` with
   `--compile auto`, then `run_bucketed`, the server worker's call), batch 1 and 4: the
   "pipeline alone" that HTTP is compared with, and the it/s target.
4. `sd15-nobatch`: the server again with `--max-batch-size 1`, 8 clients: the batching
   gain through HTTP.
5. `sdxl-eager`, 6. `sdxl-server` (the `auto` preset applied to the built pipeline).
7. `sd15-sweep`: compile candidates at SD 1.5 batch 1 on the server path's pipeline
   (QKV fused, channels_last): inductor without CUDA graphs; reduce-overhead without
   fullgraph; CUDA graphs captured outside inductor (around an inductor-compiled and
   around an eager UNet); then max-autotune without and with CUDA graphs (the
   `--compile max` preset; the slowest to compile).

it/s is the denoising rate from the difference of two whole calls (`--steps` and
`--short-steps` steps): text encoding, VAE decode and image conversion cancel out, and
no step is synchronised on its own. images/s is batch / the median wall time of a
`--steps` call. Every row says how long its first call (compile, capture) took.

    python -m bench.gpu --out bench/results/h100-fast-path.json     # on a CUDA machine
    python -m bench.gpu --smoke --out /tmp/smoke.json                 # tiny configs on the CPU
    python -m bench.gpu --report bench/results/h100-fast-path.json    # the tables again
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from . import gpu_configs

EAGER = "eager (--compile off)"
SERVER = "server default (--compile auto)"

# Estimated seconds per stage on an H100 (from bench/results/h100-gpu.json: ~50 s per
# SD 1.5 compile, ~100 s per SDXL one); a stage that no longer fits is skipped.
ESTIMATES = {
    "sd15-eager": 20,
    "sd15-http": 240,
    "sd15-server": 60,
    "sd15-nobatch": 60,
    "sdxl-eager": 40,
    "sdxl-server": 130,
    "sd15-sweep": 60,  # per cheap candidate; max-autotune ones: SWEEP_AUTOTUNE_ESTIMATE
}
SWEEP_AUTOTUNE_ESTIMATE = 240


class Bench:
    def __init__(self, args):
        self.args = args
        self.device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
        self.dtype = torch.float16 if self.device == "cuda" else torch.float32
        self.started = time.monotonic()
        self.rows: list[dict] = []
        self.http: list[dict] = []
        self.cold_starts: list[dict] = []
        self.notes: list[str] = []
        self.work = Path(args.work_dir or tempfile.mkdtemp(prefix="sd-gpu-bench-"))
        self.environment = {
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0) if self.device == "cuda" else platform.processor() or "cpu",
            "python": platform.python_version(),
            "steps": args.steps,
            "short_steps": args.short_steps,
            "smoke": args.smoke,
            "budget_s": args.budget_s,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        }
        if self.device == "cuda":
            self.environment["capability"] = list(torch.cuda.get_device_capability(0))
            self.environment["cuda"] = torch.version.cuda
        with contextlib.suppress(Exception):
            import diffusers
            import transformers

            self.environment.update(diffusers=diffusers.__version__, transformers=transformers.__version__)
        with contextlib.suppress(Exception):
            import triton

            self.environment["triton"] = triton.__version__

    # -- bookkeeping --------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.args.budget_s - self.elapsed()

    def save(self) -> None:
        if self.args.out:
            payload = {"environment": self.environment, "rows": self.rows, "http": self.http,
                       "cold_starts": self.cold_starts, "notes": self.notes}
            Path(self.args.out).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(str(self.args.out) + ".tmp")
            tmp.write_text(json.dumps(payload, indent=2))
            tmp.replace(self.args.out)

    def note(self, text: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {text}", flush=True)
        self.notes.append(f"[{self.elapsed():.0f}s] {text}")
        self.save()

    def fits(self, stage: str, estimate: float | None = None) -> bool:
        if self.args.stages and stage not in self.args.stages:
            return False
        needed = ESTIMATES.get(stage, 60) if estimate is None else estimate
        if self.args.smoke or self.left() >= needed:
            return True
        self.note(f"{stage}: skipped, {self.left():.0f}s left of the budget, about {needed:.0f}s needed")
        return False

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def free(self) -> None:
        import gc

        gc.collect()
        if self.device == "cuda":
            torch.cuda.empty_cache()

    # -- building -----------------------------------------------------------------------

    def build(self, arch: dict):
        from diffusers import (
            AutoencoderKL,
            EulerDiscreteScheduler,
            StableDiffusionPipeline,
            StableDiffusionXLPipeline,
            UNet2DConditionModel,
        )
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

        xl = arch["pipeline"] == "StableDiffusionXLPipeline"
        torch.manual_seed(0)
        # Built straight on the device: initialising SDXL's 2.6B UNet parameters on the
        # CPU would take longer than the benchmark.
        with torch.device(self.device):
            unet = UNet2DConditionModel(**arch["unet"])
            vae = AutoencoderKL(**arch["vae"])
            encoders = []
            for index, config in enumerate(arch["text_encoders"]):
                model_class = CLIPTextModelWithProjection if xl and index == 1 else CLIPTextModel
                encoders.append(model_class(CLIPTextConfig(**config)))
        for module in (unet, vae, *encoders):
            module.eval().requires_grad_(False)
        scheduler = EulerDiscreteScheduler(**gpu_configs.SCHEDULER)
        if xl:
            pipe = StableDiffusionXLPipeline(
                vae=vae, text_encoder=encoders[0], text_encoder_2=encoders[1], tokenizer=None, tokenizer_2=None,
                unet=unet, scheduler=scheduler,
            )
        else:
            pipe = StableDiffusionPipeline(
                vae=vae, text_encoder=encoders[0], tokenizer=None, unet=unet, scheduler=scheduler,
                safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            )
        pipe.set_progress_bar_config(disable=True)
        pipe.to(self.dtype)
        pipe.vae.enable_slicing()  # as the server loads every model
        if self.device == "cuda":
            pipe.unet.to(memory_format=torch.channels_last)
        self.note(f"built {arch['name']} (UNet {sum(p.numel() for p in pipe.unet.parameters()) / 1e9:.2f}B parameters)")
        return pipe

    def save_for_server(self, pipe, folder: Path) -> None:
        """The pipeline as a local model folder `serve --model` loads (fp16 files on CUDA)."""
        from inference.engine.builtin import _tokenizer  # the byte-level tokenizer of builtin:tiny

        pipe.register_modules(tokenizer=_tokenizer(self.work / "tokenizer-files"))
        started = time.perf_counter()
        pipe.save_pretrained(folder, variant="fp16" if self.device == "cuda" else None)
        pipe.register_modules(tokenizer=None)
        self.note(f"saved the model for the server to {folder} in {time.perf_counter() - started:.1f}s")

    # -- measuring ----------------------------------------------------------------------

    def embeddings(self, pipe, arch: dict, batch: int) -> dict:
        """Prompt and negative embeddings from the text encoders, on fixed random token ids."""
        generator = torch.Generator("cpu").manual_seed(batch)
        vocab = arch["text_encoders"][0]["vocab_size"]
        ids = torch.randint(0, vocab, (2 * batch, 77), generator=generator).to(self.device)
        with torch.inference_mode():
            if arch["pipeline"] == "StableDiffusionXLPipeline":
                first = pipe.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
                second = pipe.text_encoder_2(ids, output_hidden_states=True)
                embeds = torch.cat([first, second.hidden_states[-2]], dim=-1)
                pooled = second.text_embeds
                return dict(
                    prompt_embeds=embeds[:batch], negative_prompt_embeds=embeds[batch:],
                    pooled_prompt_embeds=pooled[:batch], negative_pooled_prompt_embeds=pooled[batch:],
                )
            embeds = pipe.text_encoder(ids)[0]
            return dict(prompt_embeds=embeds[:batch], negative_prompt_embeds=embeds[batch:])

    def pipe_caller(self, pipe, arch: dict):
        """(batch, steps) -> seconds for a whole call of a built pipeline."""

        def call(batch: int, steps: int) -> float:
            self.sync()
            started = time.perf_counter()
            embeddings = self.embeddings(pipe, arch, batch)
            with torch.inference_mode():
                images = pipe(
                    **embeddings, num_inference_steps=steps, guidance_scale=7.0,
                    width=arch["resolution"], height=arch["resolution"],
                    generator=torch.Generator("cpu").manual_seed(0), output_type="pil",
                ).images
            self.sync()
            assert len(images) == batch
            return time.perf_counter() - started

        return call

    def engine_caller(self, model, resolution: int):
        """(batch, steps) -> seconds for the server worker's own call (`run_bucketed`)."""
        from inference.engine.generate import BatchKey, ImageTask
        from inference.engine.padded import run_bucketed
        from inference.engine.samplers import resolve

        def call(batch: int, steps: int) -> float:
            key = BatchKey(model=model.name, kind="txt2img", width=resolution, height=resolution, steps=steps,
                           sampler=resolve(None, None), cfg_scale=7.0)
            tasks = [ImageTask(prompt=f"prompt {i}", negative_prompt="", seed=i) for i in range(batch)]
            self.sync()
            started = time.perf_counter()
            images = run_bucketed(model, key, tasks)
            self.sync()
            assert len(images) == batch
            return time.perf_counter() - started

        return call

    def measure(self, call, arch: dict, mode: str, batch: int, **extra) -> dict:
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        steps, short = self.args.steps, self.args.short_steps
        first = call(batch, 3)  # compile, CUDA graph capture, cuDNN algorithm choice
        call(batch, 3)
        reps = 1 if self.args.smoke else self.args.reps
        longs = [call(batch, steps) for _ in range(reps)]
        shorts = [call(batch, short) for _ in range(reps)]
        long, brief = statistics.median(longs), statistics.median(shorts)
        row = {
            "model": arch["name"],
            "resolution": arch["resolution"],
            "mode": mode,
            "batch": batch,
            "it_per_s": round((steps - short) / (long - brief), 2) if long > brief else None,
            "images_per_s": round(batch / long, 3),
            "seconds_per_call": round(long, 3),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if self.device == "cuda" else None,
            "first_call_s": round(first, 1),
            "reps": reps,
            **extra,
        }
        self.rows.append(row)
        self.save()
        print(f"[{self.elapsed():6.1f}s] {row}", flush=True)
        return row

    def attempt(self, what: str, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - record it, go on with the next stage
            self.note(f"{what} failed: {type(error).__name__}: {str(error)[:600]}")
            return None
        finally:
            self.free()

    # -- the server -----------------------------------------------------------------------

    def server_flags(self, folder: Path, max_batch: int) -> list[str]:
        flags = ["--model", str(folder), "--max-batch-size", str(max_batch), "--queue-size", "64",
                 "--log-level", "info"]
        if self.args.smoke:
            # Eager on the CPU, but warmed, so the warming path runs here too.
            flags += ["--compile", "off", "--warmup-sizes", "native", "--device", "cpu"]
        else:
            flags += ["--compile", "auto"]
        return flags

    def http_stage(self, folder: Path, arch: dict, inductor_dir: Path) -> None:
        from .common import timed_server
        from .throughput import http_round, mean_batch

        env = {"TORCHINDUCTOR_CACHE_DIR": str(inductor_dir)}
        body = {"steps": self.args.steps, "cfg_scale": 7.0}
        requests = 1 if self.args.smoke else self.args.http_requests
        shutil.rmtree(inductor_dir, ignore_errors=True)
        for cache in ("empty", "warm"):
            with timed_server(*self.server_flags(folder, 4), cache_dir=self.work / "models", env=env,
                              timeout=self.args.server_timeout_s) as (url, seconds):
                self.cold_starts.append({"model": arch["name"], "cache": cache, "seconds_to_ready": round(seconds, 1),
                                         "startup_metric_s": _metric(url, "sd_startup_seconds"),
                                         "max_batch_size": 4})
                self.note(f"server ready in {seconds:.1f}s with {'an empty' if cache == 'empty' else 'a warm'} compile cache")
                if cache == "empty":
                    http_round(url, self.args.clients, 1, body, seed_base=50_000)  # warm the HTTP path
                    result = http_round(url, self.args.clients, requests, body)
                    self.http.append({"model": arch["name"], "max_batch_size": 4, "clients": self.args.clients,
                                      **_rounded(result), "mean_batch": _round(mean_batch(url))})
                    self.note(f"HTTP, {self.args.clients} clients, max batch 4: {result['images_per_s']:.2f} images/s, "
                              f"p50 {result['p50_s']:.2f}s, p95 {result['p95_s']:.2f}s")
            self.save()

    def nobatch_stage(self, folder: Path, arch: dict, inductor_dir: Path) -> None:
        from .common import timed_server
        from .throughput import http_round, mean_batch

        env = {"TORCHINDUCTOR_CACHE_DIR": str(inductor_dir)}
        body = {"steps": self.args.steps, "cfg_scale": 7.0}
        requests = 1 if self.args.smoke else self.args.http_requests
        with timed_server(*self.server_flags(folder, 1), cache_dir=self.work / "models", env=env,
                          timeout=self.args.server_timeout_s) as (url, seconds):
            self.note(f"server (max batch 1) ready in {seconds:.1f}s")
            http_round(url, self.args.clients, 1, body, seed_base=50_000)
            result = http_round(url, self.args.clients, requests, body)
            self.http.append({"model": arch["name"], "max_batch_size": 1, "clients": self.args.clients,
                              **_rounded(result), "mean_batch": _round(mean_batch(url))})
        self.save()

    # -- the stages -------------------------------------------------------------------------

    def load_server_path(self, folder: Path, mode: str = "auto"):
        from inference.engine.fast_path import choose_fast_path
        from inference.engine.loading import choose_device, load_model

        device = choose_device(self.device, "float16" if self.device == "cuda" else "float32")
        config = choose_fast_path(mode, self.device, max_batch_size=4)
        return load_model(str(folder), cache_dir=self.work / "models", device=device, fast_path=config)

    def sweep(self, model, arch: dict) -> None:
        """Compile candidates at batch 1 on the server path's (fused, channels_last) UNet."""
        import torch._dynamo

        from inference.engine.fast_path import AUTO_INDUCTOR, MAX_INDUCTOR

        from .cuda_graph import capture_forward

        unet = model.text2img.unet
        call = self.engine_caller(model, arch["resolution"])
        graphs = self.device == "cuda"
        candidates = [
            ("inductor default, fullgraph (no CUDA graphs)", dict(fullgraph=True), None, AUTO_INDUCTOR, False),
            ("reduce-overhead, no fullgraph", dict(mode="reduce-overhead", fullgraph=False), None, AUTO_INDUCTOR, False),
            ("inductor default + CUDA graph outside inductor", dict(fullgraph=True), "outside", AUTO_INDUCTOR, False),
            ("eager + CUDA graph (no compile)", None, "outside", AUTO_INDUCTOR, False),
            ("max-autotune-no-cudagraphs", dict(mode="max-autotune-no-cudagraphs", fullgraph=True), None, MAX_INDUCTOR, True),
            ("max-autotune (CUDA graphs inside, the --compile max preset)", dict(mode="max-autotune", fullgraph=True), None,
             MAX_INDUCTOR, True),
        ]
        import torch._inductor.config as inductor_config

        for name, options, graph, inductor, autotune in candidates:
            needs_graphs = graph == "outside" or (options or {}).get("mode") in ("reduce-overhead", "max-autotune")
            if needs_graphs and not graphs:
                continue  # CUDA graphs need CUDA
            if not self.fits("sd15-sweep", SWEEP_AUTOTUNE_ESTIMATE if autotune else None):
                continue
            torch._dynamo.reset()
            for key, value in inductor.items():
                setattr(inductor_config, key, value)
            unet._compiled_call_impl = None  # undo nn.Module.compile
            unet.__dict__.pop("forward", None)  # undo an earlier capture
            if options is not None and graph is None:
                unet.compile(dynamic=False, **options)
            elif graph == "outside":
                forward = type(unet).forward.__get__(unet)
                if options is not None:
                    forward = torch.compile(forward, dynamic=False, **options)
                unet.forward = capture_forward(forward)
            self.attempt(f"sweep {name}", self.measure, call, arch, name, 1, path="engine", candidate=True)
        unet.__dict__.pop("forward", None)

    def run(self) -> None:
        smoke = self.args.smoke
        sd15, sdxl = (gpu_configs.SD15_SMOKE, gpu_configs.SDXL_SMOKE) if smoke else (gpu_configs.SD15, gpu_configs.SDXL)
        folder = self.work / "sd15-random"
        inductor_dir = self.work / "inductor-cache"
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(inductor_dir)  # shared with the servers it starts
        model = None
        try:
            pipe = self.build(sd15)
            if self.fits("sd15-eager"):
                call = self.pipe_caller(pipe, sd15)
                for batch in (1, 4):
                    self.attempt(f"{sd15['name']} eager batch {batch}", self.measure, call, sd15, EAGER, batch, path="pipeline")
            self.save_for_server(pipe, folder)
            del pipe
            self.free()
            if self.fits("sd15-http"):
                self.attempt("HTTP and cold starts", self.http_stage, folder, sd15, inductor_dir)
            if self.fits("sd15-server"):
                model = self.attempt("loading the server path", self.load_server_path, folder)
                if model is not None:
                    self.note(f"server path: {model.fast_path.summary()}")
                    call = self.engine_caller(model, sd15["resolution"])
                    for batch in (1, 4):
                        self.attempt(f"{sd15['name']} server path batch {batch}", self.measure, call, sd15, SERVER, batch,
                                     path="engine")
            if self.fits("sd15-nobatch"):
                self.attempt("HTTP without batching", self.nobatch_stage, folder, sd15, inductor_dir)
            self.sdxl(sdxl)
            if model is not None and (not smoke or self.args.smoke_compile):
                self.sweep(model, sd15)
        finally:
            self.save()
            print()
            print(report(self._payload()))

    def sdxl(self, arch: dict) -> None:
        if not (self.fits("sdxl-eager") or self.fits("sdxl-server")):
            return
        from inference.engine.fast_path import apply_fast_path, choose_fast_path

        pipe = self.attempt(f"building {arch['name']}", self.build, arch)
        if pipe is None:
            return
        call = self.pipe_caller(pipe, arch)
        if self.fits("sdxl-eager"):
            for batch in (1, 4):
                self.attempt(f"{arch['name']} eager batch {batch}", self.measure, call, arch, EAGER, batch, path="pipeline")
        if self.fits("sdxl-server") and (not self.args.smoke or self.args.smoke_compile):
            config = choose_fast_path("auto", self.device, max_batch_size=4)
            applied = apply_fast_path(pipe, config)
            self.note(f"{arch['name']}: {applied.summary()}")
            for batch in (1, 4):
                if batch == 4 and not self.fits("sdxl-server", 110):
                    continue
                self.attempt(f"{arch['name']} server path batch {batch}", self.measure, call, arch, SERVER, batch,
                             path="pipeline")
        del pipe

    def _payload(self) -> dict:
        return {"environment": self.environment, "rows": self.rows, "http": self.http,
                "cold_starts": self.cold_starts, "notes": self.notes}


def _metric(url: str, name: str) -> float | None:
    import httpx

    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return round(float(line.split()[1]), 2)
    return None


def _round(value):
    return None if value is None else round(value, 3)


def _rounded(result: dict) -> dict:
    return {key: _round(value) if isinstance(value, float) else value for key, value in result.items()}


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
        lines += ["", table(["model", "compile cache", "spawn to ready (s)", "sd_startup_seconds"],
                            [[s["model"], s["cache"], f"{s['seconds_to_ready']:.1f}", s.get("startup_metric_s")]
                             for s in starts])]
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
    parser.add_argument("--server-timeout-s", type=float, default=420)
    parser.add_argument("--stages", nargs="*", choices=sorted(ESTIMATES), help="only these stages")
    parser.add_argument("--work-dir", type=Path, help="model folder and caches (default: a new temporary directory)")
    parser.add_argument("--report", type=Path, help="print the tables of an earlier --out file and exit")
    args = parser.parse_args(argv)
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return
    if args.smoke:
        args.steps, args.short_steps, args.reps = min(args.steps, 4), min(args.short_steps, 2), 1
    _quiet_libraries()
    Bench(args).run()


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
