"""The UNet's LoRA adapters, merged into its weights for the batches that ask for them.

diffusers loads an adapter by wrapping each targeted layer in a PEFT layer that adds
`scale * B(A(x))` to the layer's output, with the scale read from a Python float. To
`torch.compile` those floats are constants: every `<lora:NAME:W>` weight set compiled a
graph of its own, and a server with adapters gave up QKV fusion and whole-graph compiling
for all of its requests (the adapters attach to q, k and v separately).

So once the adapters are loaded, `UnetAdapters.take_from` keeps the PEFT layers beside the
UNet and puts the UNet's own layers back: the UNet is the same module, with the same
compiled (and precompiled) graphs, as on a server without adapters. A batch with adapters
writes `original + sum(weight * delta)` into the weights they target, in place, and the
next batch without them copies the originals back. That is what AUTOMATIC1111 does with
its LoRA networks too. In place matters: compiled code and CUDA graphs read a parameter at
the address it had when they were captured, so they see the new values and nothing
compiles again.

- Exactness: each merged weight is summed in float32 from a kept copy of the original and
  rounded once, and the original is restored bit for bit, so an image made without
  adapters is the same before and after any batch with them.
- Fused projections (`--compile auto` on CUDA concatenates q, k and v into one matmul):
  an adapter's q, k or v delta goes into its rows of the fused weight, which is the one
  the attention runs.
- Memory: one copy of every weight some adapter targets, on the weights' device (for
  SD 1.5 with an attention LoRA, about 0.2 GB in float16); switching computes each delta
  from its low-rank factors (milliseconds on a GPU).
- Text encoders are not compiled, so their adapter layers stay where diffusers put them
  (`lora.activate` switches them).

Adapter kinds whose merge is not a plain sum (DoRA and other PEFT variants) are refused
by name at start.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# Which slice of a fused projection each separate one became (diffusers'
# `Attention.fuse_projections`: self-attention concatenates q, k, v; cross-attention k, v).
_FUSED_ORDER = {"to_qkv": ("to_q", "to_k", "to_v"), "to_kv": ("to_k", "to_v")}


class UnsupportedAdapterError(ValueError):
    def __init__(self, adapter: str, message: str):
        super().__init__(message)
        self.adapter = adapter


@dataclass
class _Target:
    """One weight (or rows of a fused one) that adapters change, and who changes it."""

    weight: Any  # a view of the parameter the UNet runs with
    original: Any  # its values with no adapter merged
    sources: list[tuple[str, Any]] = field(default_factory=list)  # (adapter, PEFT layer)
    merged: bool = False


class UnetAdapters:
    """LoRA adapters taken out of a UNet, merged into its weights by `apply`."""

    def __init__(self, targets: list[_Target], names: set[str]):
        self._targets = targets
        self.names = frozenset(names)
        # What the weights hold; None while a switch is under way (or failed midway, say
        # out of memory): the next `apply` then rewrites every target instead of trusting it.
        self.active: tuple[tuple[str, float], ...] | None = ()

    @classmethod
    def take_from(cls, unet: Any, only: Collection[str] | None = None) -> "UnetAdapters":
        """Detach the PEFT layers diffusers put into `unet` and keep those of the adapters
        in `only` (default: all) here; the UNet gets its own layers back. Raises
        UnsupportedAdapterError (naming the adapter and the layer) for an adapter that
        cannot be merged by a sum, before changing anything."""
        import torch
        from peft.tuners.lora import LoraLayer

        modules = dict(unet.named_modules())
        layers = [(path, module) for path, module in modules.items() if isinstance(module, LoraLayer)]

        def kept(adapter: str) -> bool:  # not one whose loading failed halfway
            return only is None or adapter in only

        for path, layer in layers:
            for adapter in filter(kept, layer.lora_A):
                variant = getattr(layer, "lora_variant", {}).get(adapter)
                if variant is not None or not hasattr(layer.get_base_layer(), "weight"):
                    kind = type(variant).__name__ if variant is not None else type(layer.get_base_layer()).__name__
                    raise UnsupportedAdapterError(
                        adapter,
                        f"LoRA {adapter!r}: layer {path} ({kind}) cannot be merged into the UNet's weights; "
                        "only plain LoRA adapters are supported"
                    )
        targets: dict[tuple[int, tuple[int, ...]], _Target] = {}
        names: set[str] = set()
        with torch.no_grad():
            for path, layer in layers:
                if not any(map(kept, layer.lora_A)):
                    continue
                weight = _weight_in_use(modules, path, layer.get_base_layer())
                key = (weight.data_ptr(), tuple(weight.shape))  # a fused weight's rows are targets of their own
                target = targets.get(key)
                if target is None:
                    target = targets[key] = _Target(weight=weight, original=weight.detach().clone())
                for adapter in filter(kept, layer.lora_A):
                    target.sources.append((adapter, layer))
                    names.add(adapter)
        unet.unload_lora()
        adapters = cls(list(targets.values()), names)
        if names:
            log.info("LoRA %s: %d UNet weights merged per batch; their originals kept (%.0f MiB)",
                     ", ".join(sorted(names)), adapters.weight_count, adapters.kept_bytes / 2**20)
        return adapters

    @property
    def weight_count(self) -> int:
        """How many weights (or fused weights' row blocks) the adapters target."""
        return len(self._targets)

    @property
    def kept_bytes(self) -> int:
        """The memory the kept originals take."""
        return sum(target.original.numel() * target.original.element_size() for target in self._targets)

    def apply(self, adapters: tuple[tuple[str, float], ...]) -> None:
        """Make the UNet's weights those of `adapters` ((name, weight) pairs; names this
        UNet holds no layers of are ignored). Nothing is written when the set is unchanged."""
        wanted = {name: weight for name, weight in adapters if name in self.names and weight != 0}
        active = tuple(sorted(wanted.items()))
        if active == self.active:
            return
        import torch

        self.active = None
        with torch.no_grad():
            for target in self._targets:
                parts = [(wanted[name], layer, name) for name, layer in target.sources if name in wanted]
                if not parts:
                    if target.merged:
                        target.weight.copy_(target.original)
                        target.merged = False
                    continue
                target.merged = True  # from here on its values may be anything but the original
                merged = target.original.to(torch.float32, copy=True)  # .float() of float32 is the original itself
                for weight, layer, name in parts:
                    merged += weight * layer.get_delta_weight(name).float()
                target.weight.copy_(merged)
        self.active = active


def _weight_in_use(modules: dict[str, Any], path: str, base: Any) -> Any:
    """The tensor the UNet really computes `base`'s output with: its own weight, or its
    rows of the fused projection that replaced it."""
    parent_path, _, leaf = path.rpartition(".")
    parent = modules.get(parent_path)
    if parent is not None and getattr(parent, "fused_projections", False):
        for fused_name, order in _FUSED_ORDER.items():
            fused = getattr(parent, fused_name, None)
            if fused is None or leaf not in order:
                continue
            start = 0
            for name in order:
                size = _unwrapped(getattr(parent, name)).weight.shape[0]
                if name == leaf:
                    return fused.weight[start : start + size]
                start += size
    return base.weight


def _unwrapped(module: Any) -> Any:
    return module.get_base_layer() if hasattr(module, "get_base_layer") else module
