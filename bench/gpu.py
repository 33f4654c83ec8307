"""SD 1.5 (512x512) and SDXL (1024x1024) on a GPU: plain fp32 vs the server's path.

The architectures are built from their published configs (bench/gpu_configs.py) with
random weights: the same layers and FLOPs as the real models, no download. Each model is
measured in one run, in three modes:

- `fp32 plain`: float32, classic (non-SDPA) attention, contiguous memory: the baseline.
- `fp16 server`: what `inference.engine.loading.load_model` does on CUDA: float16, SDPA
  attention (diffusers' default processor), channels_last UNet, VAE slicing.
- `fp16 + compile`: the same with `torch.compile(unet)` (inductor, default mode, static
  shapes: one compile per batch shape, whose time is reported).

For each, at batch 1 and batch 4 (CFG 7, so the UNet sees 2x the batch): denoising it/s
(from per-step timestamps taken after a device sync, first step excluded), images/s for a
whole call at `--steps` steps (text encoders, denoising, VAE decode, PIL conversion), and
peak GPU memory. The text encoders run on random token ids (no tokenizer files), outside
nothing: their time is inside images/s. Results go to `--out` (JSON, rewritten after each
measurement, so a run cut short keeps what it measured) and a Markdown table to stdout.

    python -m bench.gpu --out gpu.json            # on a CUDA machine
    python -m bench.gpu --smoke                   # tiny configs on the CPU, to test the code
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from . import gpu_configs

MODES = ("fp32 plain", "fp16 server", "fp16 + compile")


class Bench:
    def __init__(self, args):
        self.args = args
        self.device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
        self.half = torch.float16
        self.started = time.monotonic()
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self.environment = {
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0) if self.device == "cuda" else platform.processor() or "cpu",
            "python": platform.python_version(),
            "steps": args.steps,
            "smoke": args.smoke,
            # PyTorch's defaults, left as they are: fp32 matmuls in full fp32, convolutions in TF32.
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        }
        try:
            import diffusers
            import transformers

            self.environment.update(diffusers=diffusers.__version__, transformers=transformers.__version__)
        except Exception:  # noqa: BLE001 - reported by the import that follows
            pass

    # -- bookkeeping --------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def save(self) -> None:
        if self.args.out:
            payload = {"environment": self.environment, "rows": self.rows, "notes": self.notes}
            tmp = Path(str(self.args.out) + ".tmp")
            tmp.write_text(json.dumps(payload, indent=2))
            tmp.replace(self.args.out)

    def note(self, text: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {text}", flush=True)
        self.notes.append(text)
        self.save()

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

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
        pipe.vae.enable_slicing()  # as the server loads every model
        return pipe

    def configure(self, pipe, mode: str) -> None:
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        if mode == "fp32 plain":
            pipe.to(torch.float32)
            pipe.unet.set_attn_processor(AttnProcessor())
            pipe.vae.set_attn_processor(AttnProcessor())
            pipe.unet.to(memory_format=torch.contiguous_format)
            return
        unet = getattr(pipe.unet, "_orig_mod", pipe.unet)
        pipe.unet = unet
        pipe.to(self.half)
        unet.set_attn_processor(AttnProcessor2_0())
        pipe.vae.set_attn_processor(AttnProcessor2_0())
        unet.to(memory_format=torch.channels_last)
        if mode == "fp16 + compile":
            pipe.unet = torch.compile(unet, dynamic=False)

    # -- measuring ----------------------------------------------------------------------

    def encode(self, pipe, arch: dict, batch: int) -> dict:
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

    def call(self, pipe, arch: dict, batch: int, steps: int) -> tuple[float, list[float]]:
        step_times: list[float] = []

        def on_step_end(pipeline, step, timestep, callback_kwargs):
            self.sync()
            step_times.append(time.perf_counter())
            return callback_kwargs

        self.sync()
        started = time.perf_counter()
        embeddings = self.encode(pipe, arch, batch)
        with torch.inference_mode():
            images = pipe(
                **embeddings,
                num_inference_steps=steps,
                guidance_scale=7.0,
                width=arch["resolution"],
                height=arch["resolution"],
                generator=torch.Generator("cpu").manual_seed(0),
                output_type="pil",
                callback_on_step_end=on_step_end,
            ).images
        self.sync()
        assert len(images) == batch
        return time.perf_counter() - started, step_times

    def measure(self, pipe, arch: dict, mode: str, batch: int) -> None:
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        # Warm-up at the real shape, 2 steps: cuDNN algorithm choice, allocator, compile.
        warmup_seconds, _ = self.call(pipe, arch, batch, 2)
        reps = 1 if mode == "fp32 plain" or self.args.smoke else self.args.reps
        walls, rates = [], []
        for _ in range(reps):
            wall, steps = self.call(pipe, arch, batch, self.args.steps)
            walls.append(wall)
            rates.append((len(steps) - 1) / (steps[-1] - steps[0]))
        row = {
            "model": arch["name"],
            "resolution": arch["resolution"],
            "mode": mode,
            "batch": batch,
            "it_per_s": round(statistics.median(rates), 2),
            "images_per_s": round(batch / statistics.median(walls), 3),
            "seconds_per_call": round(statistics.median(walls), 3),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if self.device == "cuda" else None,
            "warmup_s": round(warmup_seconds, 1),
            "reps": reps,
        }
        self.rows.append(row)
        self.save()
        print(f"[{self.elapsed():6.1f}s] {row}", flush=True)

    def run_mode(self, pipe, arch: dict, mode: str) -> None:
        try:
            self.configure(pipe, mode)
            for batch in (1, 4):
                self.measure(pipe, arch, mode, batch)
        except Exception as error:  # noqa: BLE001 - record it, go on with the next stage
            self.note(f"{arch['name']} {mode} failed: {type(error).__name__}: {str(error)[:300]}")
        finally:
            if self.device == "cuda":
                torch.cuda.empty_cache()

    # -- the run ------------------------------------------------------------------------

    def run(self) -> None:
        archs = [gpu_configs.SD15_SMOKE, gpu_configs.SDXL_SMOKE] if self.args.smoke else [gpu_configs.SD15, gpu_configs.SDXL]
        compile_budgets = (self.args.compile_budget_sd15, self.args.compile_budget_sdxl)
        compile_on = self.args.compile if self.args.compile is not None else self.device == "cuda"
        pipes = []
        # Each architecture keeps its own compile budget even when the one before it fails to build.
        for arch, needed in zip(archs, compile_budgets, strict=True):
            try:
                pipe = self.build(arch)
            except Exception as error:  # noqa: BLE001
                self.note(f"building {arch['name']} failed: {type(error).__name__}: {error}")
                continue
            self.note(f"built {arch['name']} (UNet {sum(p.numel() for p in pipe.unet.parameters()) / 1e9:.2f}B parameters)")
            for mode in MODES[:2]:
                self.run_mode(pipe, arch, mode)
            pipes.append((arch, pipe, needed))
        # Compiling is slow to start: done last, so eager results are safe if time runs out.
        for arch, pipe, needed in pipes:
            if not compile_on:
                self.note(f"{arch['name']}: torch.compile skipped (--no-compile or no CUDA)")
            elif self.args.budget_s - self.elapsed() < needed:
                left_s = self.args.budget_s - self.elapsed()
                self.note(f"{arch['name']}: torch.compile skipped: {left_s:.0f}s left of the budget, {needed}s needed")
            else:
                self.run_mode(pipe, arch, MODES[2])
            del pipe
            if self.device == "cuda":
                torch.cuda.empty_cache()
        print()
        print(report(self.rows, self.environment))


def report(rows: list[dict], environment: dict) -> str:
    from .common import table

    lines = [f"device: {environment.get('device')}, torch {environment.get('torch')}, "
             f"diffusers {environment.get('diffusers')}, {environment.get('steps')} steps, CFG 7", ""]
    body = [
        [r["model"], f"{r['resolution']}x{r['resolution']}", r["mode"], r["batch"], f"{r['it_per_s']:.2f}",
         f"{r['images_per_s']:.3f}", "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}",
         f"{r['warmup_s']:.1f}"]
        for r in rows
    ]
    lines.append(table(["model", "size", "mode", "batch", "it/s", "images/s", "peak GiB", "warm-up s"], body))
    lines.append("")
    by_key = {(r["model"], r["mode"], r["batch"]): r for r in rows}
    for model in dict.fromkeys(r["model"] for r in rows):
        for batch in (1, 4):
            plain = by_key.get((model, "fp32 plain", batch))
            for mode in MODES[1:]:
                fast = by_key.get((model, mode, batch))
                if plain and fast:
                    lines.append(f"{model} batch {batch}: {mode} / fp32 plain = "
                                 f"{fast['it_per_s'] / plain['it_per_s']:.2f}x it/s, "
                                 f"{fast['images_per_s'] / plain['images_per_s']:.2f}x images/s")
        for mode in MODES:
            one, four = by_key.get((model, mode, 1)), by_key.get((model, mode, 4))
            if one and four:
                gain = four["images_per_s"] / one["images_per_s"]
                lines.append(f"{model} {mode}: batching gain (images/s, batch 4 / batch 1) = {gain:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny configs on the CPU, to test this script")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--reps", type=int, default=2, help="timed calls per point (fp32 always 1)")
    parser.add_argument("--compile", dest="compile", action="store_true", default=None)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--budget-s", type=float, default=460, help="skip compile stages that would not fit")
    parser.add_argument("--compile-budget-sd15", type=float, default=120)
    parser.add_argument("--compile-budget-sdxl", type=float, default=200)
    parser.add_argument("--report", type=Path, help="print the table of an earlier --out file and exit")
    args = parser.parse_args(argv)
    if args.report:
        data = json.loads(args.report.read_text())
        print(report(data["rows"], data["environment"]))
        return
    if args.smoke:
        args.steps = min(args.steps, 3)
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
