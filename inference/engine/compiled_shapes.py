"""Compiled code for the shapes that were warmed, eager code for the rest.

torch.compile specialises each compiled graph to its inputs' shapes and dtypes
(`dynamic=False`), and on CUDA records a CUDA graph per shape. Left to itself, that goes
wrong in these ways once a server is ready:

- **The sampler changes the UNet's inputs.** Euler, Euler a, LMS, Heun, DPM2 and DPM2 a
  pass float32 timesteps; the DPM++ family, DDIM, PNDM, UniPC, DEIS and LCM int64 ones. Each dtype is a
  graph of its own: a replica warmed with one sampler compiled again at the first request
  with the other, after it said it was ready. The UNet uses its timestep only through its
  sinusoidal embedding, which converts it to float32 first (`get_timestep_embedding`), so
  converting before the call gives the same images and one graph per shape whatever the
  sampler (`tests/inference/test_compiled_shapes.py`).
- **The memory layout changes the inputs too.** Dynamo guards on strides: img2img and
  inpainting latents come out of the (channels_last) VAE encoder in channels_last
  layout, so the first img2img request compiled the UNet and the decoder again for
  layouts txt2img never used. Inputs are made contiguous before the call (a copy of a
  few latents; the values are the same).
- **Dynamo stops compiling after `recompile_limit` graphs per function** (8 by default)
  and from then on runs every new shape eagerly, without a word. The warmed shapes of a few
  sizes x batch buckets reach that quickly; the limit is raised to `RECOMPILE_LIMIT`.
- **A shape nobody warmed compiles in the middle of serving**: about a minute on a GPU
  (the UNet and the VAE decoder, then graph capture), with every queued request waiting
  behind it on the one pipeline thread. Once warm-up has run, a shape it did not run goes
  through the module's eager code instead (the same weights, fp16, fused projections,
  channels_last: the `--compile off` speed), logged once per shape with the setting that
  would have compiled it. A model that was never warmed (`--warmup-sizes none`) keeps
  compiling each new shape on its first call.
- **LoRA adapters were constants to the compiled graph**: every active set of adapters
  and weights (`<lora:NAME:0.7>`, any weight a prompt asks for) compiled a graph of its
  own. They are merged into the UNet's weights instead (`lora_merge.py`), which compiled
  code reads like any input, so the gate never sees them.

`gate_forward` puts this in front of a module: its `forward` becomes a `GatedForward`
that holds the eager forward and the compiled one and picks per call. Where a compiled
signature has a precompiled forward (saved by an earlier start or at its own first call,
`precompiled.py`), that runs instead of dynamo's. The module object
stays what it was (LoRA loading, diffusers' type checks and the derived img2img/inpaint
pipelines, which share it, see the same UNet).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

# Per compiled function (dynamo counts per code object, so two checkpoints' UNets share
# it): enough for the warmed shapes of several sizes x buckets, with both CFG variants.
RECOMPILE_LIMIT = 64
# Shapes sent to eager code are logged the first time each is seen, up to this many.
LOGGED_EAGER_SHAPES = 32

Signature = tuple[Any, ...]


def _sample(args: tuple, kwargs: dict) -> Any:
    """The latents a UNet or VAE decoder forward is called with (first argument, `sample`)."""
    return args[0] if args else kwargs.get("sample")


def input_signature(args: tuple, kwargs: dict) -> Signature:
    """What dynamo specialises a graph on, as far as it changes per call: each tensor's
    shape and dtype, and every other argument's value (constants are baked into the
    graph). Dicts (SDXL's `added_cond_kwargs`) are looked into."""
    import torch

    def describe(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return ("tensor", tuple(value.shape), str(value.dtype))
        if isinstance(value, dict):
            return ("dict", tuple((key, describe(value[key])) for key in sorted(value)))
        if isinstance(value, (list, tuple)):
            return (type(value).__name__, tuple(describe(item) for item in value))
        return ("value", repr(value))

    return (tuple(describe(arg) for arg in args), tuple((key, describe(kwargs[key])) for key in sorted(kwargs)))


def contiguous_inputs(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Every tensor argument (dicts and lists looked into) in the default layout."""
    import torch
    from torch.utils._pytree import tree_map

    def contiguous(value: Any) -> Any:
        return value.contiguous() if isinstance(value, torch.Tensor) else value

    return tree_map(contiguous, args), tree_map(contiguous, kwargs)


def mark_batch_dynamic(args: tuple, kwargs: dict) -> None:
    """Dimension 0 of every tensor with the sample's row count marked dynamic for dynamo
    (the sample, the text embeddings, SDXL's added conditions); a size of 1 stays
    specialised (dynamo's 0/1 rule), so batch 1 without CFG keeps a graph of its own."""
    import torch
    from torch.utils._pytree import tree_leaves

    sample = _sample(args, kwargs)
    if not isinstance(sample, torch.Tensor) or sample.dim() == 0:
        return
    rows = sample.shape[0]
    for value in tree_leaves((args, kwargs)):
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == rows:
            torch._dynamo.maybe_mark_dynamic(value, 0)


def float_timestep(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The UNet's `timestep` (second positional argument or keyword) as a float32 tensor:
    the same value its embedding computes with, one dtype whatever the sampler."""
    import torch

    def convert(timestep: Any, like: Any) -> Any:
        if isinstance(timestep, torch.Tensor):
            return timestep if timestep.dtype == torch.float32 else timestep.to(torch.float32)
        if isinstance(timestep, (int, float)):
            # A Python number would be baked into the graph: one compile per step.
            return torch.tensor(float(timestep), dtype=torch.float32, device=getattr(like, "device", None))
        return timestep

    if "timestep" in kwargs:
        return args, {**kwargs, "timestep": convert(kwargs["timestep"], _sample(args, kwargs))}
    if len(args) >= 2:
        return (args[0], convert(args[1], args[0]), *args[2:]), kwargs
    return args, kwargs


@dataclass
class CompiledShapes:
    """Which input signatures run compiled code, per gated module ("unet", "vae_decoder").

    `learning` (the start): every new signature is admitted, so it compiles on its first
    call; warm-up runs in this state. `close()` (after warm-up): only the signatures seen
    so far run compiled; any other goes to eager code and is counted.
    """

    learning: bool = True
    admitted: dict[str, set[Signature]] = field(default_factory=dict)
    eager_calls: dict[str, int] = field(default_factory=dict)
    # Told the module's name at each eager call after warm-up (the server's metric).
    on_eager: Callable[[str], None] | None = field(default=None, repr=False)
    # Where compiled forwards are saved and loaded per signature (engine/precompiled.py);
    # None: dynamo compiles each signature at every start. Set before warm-up.
    precompiled_store: Any = field(default=None, repr=False)
    _logged: set[tuple[str, Signature]] = field(default_factory=set, repr=False)

    def admit(
        self, module: str, signature: Signature, describe: Callable[[], str] = lambda: ""
    ) -> bool:
        shapes = self.admitted.setdefault(module, set())
        if signature in shapes:
            return True
        # Past RECOMPILE_LIMIT dynamo would run new shapes eagerly anyway; stopping here
        # also bounds what is remembered, whatever the clients send.
        if self.learning and len(shapes) < RECOMPILE_LIMIT:
            shapes.add(signature)
            return True
        self.eager_calls[module] = self.eager_calls.get(module, 0) + 1
        if self.on_eager is not None:
            self.on_eager(module)
        if len(self._logged) < LOGGED_EAGER_SHAPES and (module, signature) not in self._logged:
            self._logged.add((module, signature))
            log.warning(
                "%s: %s is not among the shapes compiled before ready, so it runs eager (nothing "
                "compiles while serving); add its size to --warmup-sizes (SD_WARMUP_SIZES) to compile it",
                module, describe() or "this input shape",
            )
        return False

    def close(self) -> None:
        """Warm-up is over: from now on only the shapes it ran are compiled."""
        self.learning = False

    def compiled_count(self, module: str) -> int:
        return len(self.admitted.get(module, ()))


def _shape_text(args: tuple, kwargs: dict) -> str:
    shape = getattr(_sample(args, kwargs), "shape", None)
    if shape is None or len(shape) != 4:
        return "this input shape"
    rows, _, height, width = shape
    return f"{width * 8}x{height * 8} at {rows} latent rows"


class GatedForward:
    """A module's forward that runs `compiled` for admitted signatures, `eager` otherwise."""

    def __init__(
        self,
        name: str,
        eager: Callable[..., Any],
        compiled: Callable[..., Any],
        shapes: CompiledShapes,
        *,
        timestep_as_float: bool = False,
        dynamic_batch: bool = False,
        precompiled: Any = None,
    ):
        self.name = name
        # A PrecompiledForward (engine/precompiled.py) or None: dynamo's lazy compile only.
        self.precompiled = precompiled
        self.dynamic_batch = dynamic_batch
        self.eager = eager
        self.compiled = compiled
        self.shapes = shapes
        self.timestep_as_float = timestep_as_float
        functools.update_wrapper(self, eager)  # the signature diffusers may inspect

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = contiguous_inputs(args, kwargs)
        if self.timestep_as_float:
            args, kwargs = float_timestep(args, kwargs)
        signature = input_signature(args, kwargs)
        if self.shapes.admit(self.name, signature, lambda: _shape_text(args, kwargs)):
            if self.dynamic_batch:
                mark_batch_dynamic(args, kwargs)
            elif self.precompiled is not None:
                return self.precompiled.run(signature, args, kwargs, self.compiled)
            return self.compiled(*args, **kwargs)
        return self.eager(*args, **kwargs)


CompileFunction = Callable[..., Callable[..., Any]]


def gate_forward(
    module: Any,
    name: str,
    compile_function: CompileFunction,
    shapes: CompiledShapes,
    *,
    timestep_as_float: bool = False,
    dynamic_batch: bool = False,
    precompiled: Any = None,
    **options: Any,
) -> GatedForward:
    """Compile `module.forward` with `compile_function(forward, **options)` (torch.compile:
    lazy, the compile happens at the first call) and put a `GatedForward` in its place.
    `precompiled`: a PrecompiledForward that, once `shapes.precompiled_store` is set, saves
    and loads the compiled function per signature (the lazy compile is its fallback)."""
    eager = module.forward
    gated = GatedForward(
        name, eager, compile_function(eager, **options), shapes,
        timestep_as_float=timestep_as_float, dynamic_batch=dynamic_batch,
        precompiled=precompiled,
    )
    module.forward = gated
    return gated


def ungate(module: Any) -> None:
    """Back to the module's own forward (the benchmark's compile sweep swaps modes)."""
    if isinstance(module.__dict__.get("forward"), GatedForward):
        del module.__dict__["forward"]
