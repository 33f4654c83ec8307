"""The fast path: how a loaded pipeline is prepared for speed, chosen once, applied once.

`--compile` (`SD_COMPILE`) picks a `FastPathConfig`; `load_model` applies it right after
loading, before LoRA adapters load and before the first call:

- `off`: eager PyTorch (fp16, SDPA and channels_last on CUDA, as before).
- `auto` (the default): on CUDA, QKV projections fused (one matmul instead of three),
  channels_last, the UNet compiled by inductor with CUDA graphs (`reduce-overhead`:
  one graph replay per denoising step instead of hundreds of kernel launches) and the
  VAE decoder compiled without graphs (it decodes one image at a time and its
  convolutions dwarf the launches). On anything but CUDA, `auto` is `off`: inductor's
  CPU code gains little for the minutes it costs at start (docs/benchmarks.md).
- `max`: as `auto`, with inductor's `max-autotune` (benchmarks GEMM/convolution
  kernels while compiling: slower to warm, the fastest kernels) and coordinate-descent
  tuning. Compiles on any device, the CPU included.

Compiled models are run at a few batch sizes only (`buckets.py`), so `pad_batches` is on
whenever the UNet is compiled. The compiled forwards are gated (`compiled_shapes.py`):
one graph per shape whatever the sampler, and after warm-up only the warmed shapes run
compiled. Each warmed shape's compiled forward is also saved to the compile cache and
loaded by the next start (`precompiled.py`, `--precompile`). The torch.compile call is
injectable (`compile_function`) so the choice and its
application are tested on the CPU without compiling.

Which inductor mode `auto` uses is the one thing to revisit from measurements:
`python -m bench.gpu` measures every candidate in one run (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from .buckets import batch_buckets
from .compiled_shapes import RECOMPILE_LIMIT, CompiledShapes, CompileFunction, gate_forward
from .precompiled import PrecompiledForward, inductor_options, module_identity

log = logging.getLogger(__name__)

CompileMode = Literal["off", "auto", "max"]
COMPILE_MODES: tuple[str, ...] = ("off", "auto", "max")

# inductor settings per preset (torch._inductor.config). conv_1x1_as_mm turns the UNet's
# many 1x1 convolutions into matmuls, which inductor fuses with their neighbours; the
# coordinate-descent settings search tile sizes (slower compile, faster kernels).
AUTO_INDUCTOR: dict[str, Any] = {"conv_1x1_as_mm": True}
MAX_INDUCTOR: dict[str, Any] = {
    "conv_1x1_as_mm": True,
    "coordinate_descent_tuning": True,
    "coordinate_descent_check_all_directions": True,
    "epilogue_fusion": False,
}


@dataclass(frozen=True)
class FastPathConfig:
    """Everything that decides how a pipeline is prepared (and so what a compile cache holds)."""

    mode: CompileMode = "off"
    channels_last: bool = False
    fuse_qkv: bool = False
    compile_unet: bool = False
    compile_vae_decoder: bool = False
    # torch.compile's `mode` for the UNet: "reduce-overhead" and "max-autotune" capture CUDA
    # graphs inside inductor; the "-no-cudagraphs" variants do not.
    unet_compile_mode: str | None = None
    vae_compile_mode: str | None = None
    fullgraph: bool = True
    # The UNet's batch dimension symbolic (`torch._dynamo.maybe_mark_dynamic`): one compile
    # serves every bucket of 2 rows or more (CUDA graphs are still recorded per size), so a
    # cold start compiles 2 UNet graphs instead of one per bucket. Off in both presets
    # until bench.gpu's sweep shows its kernels as fast as the static ones.
    dynamic_batch: bool = False
    # Each warmed shape's compiled forward saved in the compile cache and loaded at the
    # next start instead of traced again (engine/precompiled.py). Needs fullgraph and
    # static shapes; on wherever those hold (`--precompile off` turns it off).
    precompile: bool = False
    inductor: tuple[tuple[str, Any], ...] = ()
    # Pad every batch to a bucket size (compiled graphs are per shape).
    pad_batches: bool = False
    buckets: tuple[int, ...] = (1,)
    reasons: tuple[str, ...] = field(default=(), compare=False)

    @property
    def compiles(self) -> bool:
        return self.compile_unet or self.compile_vae_decoder

    def settings(self) -> dict[str, Any]:
        """What a compile cache depends on (the reasons are only for the log)."""
        values = asdict(self)
        values.pop("reasons")
        values["inductor"] = dict(self.inductor)
        return values

    def summary(self) -> str:
        if not self.compiles:
            parts = ["eager"]
        else:
            parts = [f"UNet compiled ({self.unet_compile_mode})" if self.compile_unet else "UNet eager"]
            parts.append(f"VAE decoder compiled ({self.vae_compile_mode})" if self.compile_vae_decoder else "VAE decoder eager")
        if self.dynamic_batch:
            parts.append("batch dimension dynamic")
        if self.precompile:
            parts.append("precompiled per shape")
        if self.fuse_qkv:
            parts.append("QKV fused")
        if self.channels_last:
            parts.append("channels_last")
        if self.pad_batches:
            parts.append(f"batches padded to {list(self.buckets)}")
        text = f"--compile {self.mode}: " + ", ".join(parts)
        return text + (f" ({'; '.join(self.reasons)})" if self.reasons else "")


def choose_fast_path(
    mode: str,
    device: str,
    *,
    max_batch_size: int = 1,
    pad_batches: bool | None = None,
    precompile: bool = True,
) -> FastPathConfig:
    """The configuration `--compile MODE` means on `device`.

    LoRA adapters change nothing here: they are merged into the UNet's weights per batch
    (`lora_merge.py`), fused projections included. `pad_batches` overrides the padding
    decision (tests force it on the CPU, where it changes nothing but speed). `precompile`
    False (`--precompile off`): dynamo traces every warmed shape at every start, as before
    precompiled forwards existed.
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, not {mode!r}")
    cuda = device == "cuda"
    buckets = batch_buckets(max_batch_size)
    reasons: list[str] = []
    config = FastPathConfig(mode=mode, channels_last=cuda, buckets=buckets)  # type: ignore[arg-type]
    compiles = mode == "max" or (mode == "auto" and cuda)
    if mode == "auto" and not cuda:
        reasons.append(f"auto compiles on CUDA only; this is {device}")
    if compiles:
        graphs = cuda  # CUDA graphs exist on CUDA only
        if mode == "max":
            unet_mode = "max-autotune" if graphs else "max-autotune-no-cudagraphs"
            inductor = MAX_INDUCTOR
        else:
            unet_mode = "reduce-overhead" if graphs else "default"
            inductor = AUTO_INDUCTOR
        config = replace(
            config,
            fuse_qkv=cuda,
            compile_unet=True,
            compile_vae_decoder=True,
            unet_compile_mode=unet_mode,
            vae_compile_mode="max-autotune-no-cudagraphs" if mode == "max" else "default",
            precompile=precompile,
            inductor=tuple(sorted(inductor.items())),
            pad_batches=True,
        )
    if pad_batches is not None:
        config = replace(config, pad_batches=pad_batches)
    return replace(config, reasons=tuple(reasons))


def apply_fast_path(
    pipeline: Any,
    config: FastPathConfig,
    *,
    compile_function: CompileFunction | None = None,
    shapes: CompiledShapes | None = None,
) -> FastPathConfig:
    """Prepare `pipeline` as `config` says; returns what was applied. Lazy: nothing
    compiles until the first call. `shapes` records which input shapes the compiled
    forwards run (the caller closes it after warm-up).

    A VAE that upcasts to float32 at every call (SDXL's published VAE, `force_upcast`,
    in a float16 pipeline) keeps an eager decoder: its weights change dtype twice per
    call, and a compiled decoder would recompile (or re-record its graphs) each time.
    """
    import torch

    if compile_function is None:
        compile_function = torch.compile
    shapes = shapes if shapes is not None else CompiledShapes()
    vae = pipeline.vae
    if config.precompile and (config.dynamic_batch or not config.fullgraph):
        config = replace(
            config, precompile=False,
            reasons=config.reasons + ("precompiled forwards need fullgraph and static shapes",),
        )
    if config.compile_vae_decoder and getattr(vae.config, "force_upcast", False) and vae.dtype == torch.float16:
        config = replace(
            config,
            compile_vae_decoder=False,
            reasons=config.reasons + ("the VAE upcasts to float32 at every call: its decoder stays eager",),
        )
    if config.channels_last:
        pipeline.unet.to(memory_format=torch.channels_last)
        if config.compile_vae_decoder:
            pipeline.vae.to(memory_format=torch.channels_last)
    if config.fuse_qkv:
        try:
            pipeline.fuse_qkv_projections()  # the UNet's and the VAE's attention
        except ValueError as error:  # e.g. attention with added KV projections
            log.warning("QKV projections not fused: %s", error)
    if config.inductor:
        import torch._inductor.config as inductor_config

        for name, value in config.inductor:
            setattr(inductor_config, name, value)
    if config.compiles:
        import torch._dynamo.config as dynamo_config

        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
        if config.dynamic_batch:
            # Only the dimensions marked dynamic are: a second warm-up size must not turn
            # height and width symbolic too (dynamo's automatic dynamic shapes).
            dynamo_config.automatic_dynamic_shapes = False
    if config.compile_unet:
        unet_options = _compile_options(config.unet_compile_mode, config.fullgraph)
        if config.dynamic_batch:
            unet_options["dynamic"] = None  # dynamic where marked, static elsewhere
        gate_forward(
            pipeline.unet, "unet", compile_function, shapes, timestep_as_float=True,
            dynamic_batch=config.dynamic_batch,
            precompiled=_precompiled(config, "unet", pipeline.unet, getattr(pipeline.unet, "config", None),
                                     compile_function, shapes,
                                     config.unet_compile_mode),
            **unet_options,
        )
    if config.compile_vae_decoder:
        gate_forward(
            pipeline.vae.decoder, "vae_decoder", compile_function, shapes,
            precompiled=_precompiled(config, "vae_decoder", pipeline.vae.decoder, getattr(vae, "config", None),
                                     compile_function, shapes, config.vae_compile_mode,
                                     processors=getattr(vae, "attn_processors", None)),
            **_compile_options(config.vae_compile_mode, config.fullgraph),
        )
    return config


def _precompiled(
    config: FastPathConfig,
    name: str,
    module: Any,
    model_config: Any,
    compile_function: CompileFunction,
    shapes: CompiledShapes,
    mode: str | None,
    processors: dict[str, Any] | None = None,
) -> PrecompiledForward | None:
    if not config.precompile:
        return None
    # What changes the compiled code of one input signature (not the buckets or the batch
    # size: another --max-batch-size reuses the shapes it shares with this one).
    extra: dict[str, Any] = {"mode": mode, "inductor": dict(config.inductor), "channels_last": config.channels_last,
             "fuse_qkv": config.fuse_qkv, "fullgraph": config.fullgraph}
    return PrecompiledForward(
        name=name,
        module=module,
        identity=module_identity(module, model_config, extra, processors),
        compile_function=compile_function,
        options=inductor_options(mode),
        store=lambda: shapes.precompiled_store,
    )


def _compile_options(mode: str | None, fullgraph: bool) -> dict[str, Any]:
    options: dict[str, Any] = {"fullgraph": fullgraph, "dynamic": False}
    if mode not in (None, "default"):
        options["mode"] = mode
    return options
