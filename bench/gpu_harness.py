"""The GPU benchmark's harness: the `Bench` that bench/gpu.py's stages share. It keeps the
budget and the results (rewriting the JSON after every row), builds the architectures of
bench/gpu_configs.py with random weights, and times whole pipeline or engine calls.
"""

from __future__ import annotations

import contextlib
import json
import platform
import statistics
import tempfile
import time
import traceback
from pathlib import Path

import torch

from . import gpu_configs

EAGER = "eager (--compile off)"
SERVER = "server default (--compile auto)"
SERVER_TRACED = "server default, --precompile off"
SERVER_LORA = "server default, a LoRA merged"
PLAIN_FP32 = "plain fp32 (eager)"

# Estimated seconds per stage on an H100 (from bench/results/h100-gpu.json: ~50 s per
# SD 1.5 compile, ~100 s per SDXL one); a stage that no longer fits is skipped.
ESTIMATES = {
    "sd15-eager": 20,
    "sd15-http": 290,  # 4 warm-up shapes (buckets 1, 2, 4 with CFG, 1 without) compiled, then a warm restart
    "sd15-server": 60,
    "sd15-lora": 15,  # no compile: the warmed graphs with merged weights
    "sd15-nobatch": 60,
    "sd15-eager-start": 25,
    "sd15-server-traced": 120,  # batch 1 compiled by dynamo (2 UNet rows and the decoder), then measured
    "sd15-restart-traced": 330,  # a start that compiles for dynamo's entries, then the restart
    "sdxl-eager": 40,
    "sdxl-server": 130,
    "sd15-sweep": 60,  # per cheap candidate; max-autotune ones: SWEEP_AUTOTUNE_ESTIMATE
    "sd15-fp32": 30,
    "sdxl-fp32": 60,
}
SWEEP_AUTOTUNE_ESTIMATE = 240
NOTE_ERROR_CHARS = 3000  # of an exception's message kept in the notes


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
        # The servers' --precompile: auto unless the preflight (gpu_preflight.py) failed.
        self.precompile = True
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
            Path(self.args.out).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(str(self.args.out) + ".tmp")
            tmp.write_text(json.dumps(self.payload(), indent=2))
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

    def server_timeout(self) -> float:
        """How long a server may take to be ready: `--server-timeout-s`, and no longer than
        the budget left (a compile that overruns then fails the stage with the server's log
        tail in the notes, instead of the run being killed from outside with nothing said)."""
        if self.args.smoke:
            return self.args.server_timeout_s
        return max(60.0, min(self.args.server_timeout_s, self.left()))

    def server_log(self, name: str) -> Path | None:
        """Where the server called `name` writes its log (`--server-logs`), if anywhere."""
        if not self.args.server_logs:
            return None
        Path(self.args.server_logs).mkdir(parents=True, exist_ok=True)
        return Path(self.args.server_logs) / f"server-{name}.log"

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def free(self) -> None:
        import gc

        gc.collect()
        if self.device == "cuda":
            torch.cuda.empty_cache()

    # -- building -----------------------------------------------------------------------

    def build(self, arch: dict, *, plain_fp32: bool = False):
        """`arch` with random weights, as the server runs it (this device's dtype,
        channels_last on CUDA, VAE slicing); `plain_fp32`: diffusers' defaults in float32."""
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
        if plain_fp32:
            pipe.to(torch.float32)
        else:
            pipe.to(self.dtype)
            pipe.vae.enable_slicing()  # as the server loads every model
            if self.device == "cuda":
                pipe.unet.to(memory_format=torch.channels_last)
        self.note(f"built {arch['name']} (UNet {sum(p.numel() for p in pipe.unet.parameters()) / 1e9:.2f}B parameters)")
        return pipe

    def save_for_server(self, pipe, folder: Path) -> Path:
        """The pipeline as a local model folder `serve --model` loads: in float16 (CUDA) the
        fp16 variant's files only, as the server's float16 load prefers them."""
        from inference.engine.builtin import _tokenizer  # the byte-level tokenizer of builtin:tiny

        pipe.register_modules(tokenizer=_tokenizer(self.work / "tokenizer-files"))
        started = time.perf_counter()
        pipe.save_pretrained(folder, variant="fp16" if self.dtype == torch.float16 else None)
        pipe.register_modules(tokenizer=None)
        self.note(f"saved the model for the server to {folder} in {time.perf_counter() - started:.1f}s")
        return folder

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

    def engine_caller(self, model, resolution: int, sampler: str | None = None, adapters: tuple = ()):
        """(batch, steps) -> seconds for the server worker's own call (`run_bucketed`);
        `adapters`: the batch's LoRA (name, weight) pairs, as a `<lora:...>` tag gives them."""
        from inference.engine.generate import BatchKey, ImageTask
        from inference.engine.padded import run_bucketed
        from inference.engine.samplers import resolve

        def call(batch: int, steps: int) -> float:
            key = BatchKey(model=model.name, kind="txt2img", width=resolution, height=resolution, steps=steps,
                           sampler=resolve(sampler, None), cfg_scale=7.0, adapters=adapters)
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
        """`function(*args, **kwargs)`, or None when it raises: the error goes to the JSON's
        notes (its message's start and end: a server's log tail is at the end) and the
        traceback to the log, and the run goes on."""
        try:
            return function(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - record it, go on with the next stage
            traceback.print_exc()
            message = str(error)
            if len(message) > NOTE_ERROR_CHARS:
                half = NOTE_ERROR_CHARS // 2
                message = f"{message[:half]} [...] {message[-half:]}"
            self.note(f"{what} failed: {type(error).__name__}: {message}")
            return None
        finally:
            self.free()

    # -- the server path ------------------------------------------------------------------

    def load_server_path(self, folder: Path, mode: str = "auto", precompiled: Path | None = None):
        """The server's engine path on `folder`; `precompiled`: the store the server saves
        each warmed shape's forward to (its compile cache's `precompiled` folder), so that
        this process loads what the HTTP stage's server compiled, as a restarted replica does.
        None: `--precompile off`, dynamo traces each shape."""
        from inference.engine.fast_path import choose_fast_path
        from inference.engine.loading import choose_device, load_model
        from inference.engine.precompiled import PrecompiledStore

        device = choose_device(self.device, str(self.dtype).removeprefix("torch."))
        config = choose_fast_path(mode, self.device, max_batch_size=4, precompile=precompiled is not None)
        model = load_model(str(folder), cache_dir=self.work / "models", device=device, fast_path=config)
        if precompiled is not None:
            model.compiled_shapes.precompiled_store = PrecompiledStore(precompiled)
        return model

    def payload(self) -> dict:
        return {"environment": self.environment, "rows": self.rows, "http": self.http,
                "cold_starts": self.cold_starts, "notes": self.notes}
