"""Batch invariance on the CPU: an image is the same bits alone or batched.

Each request keeps its own seeded generator, so the initial noise never depends on the
batch. What can still differ is the arithmetic: CPU math libraries choose kernels by the
shape of the whole call, and a kernel change reorders the floating-point sums of a row.

- Matrix products: MKL's strict CNR mode (`MKL_CBWR`, set in `inference/__init__.py`)
  keeps a row's result independent of the rows around it, but only on Intel CPUs; on
  AMD CPUs MKL ignores it. Measured there: a `Linear` gives each row the same bits for
  any call of 8 rows or more, and different bits for 1 or 2 rows. The few-row calls
  are the time and pooled-text embeddings (one row per image and CFG half), so calls
  below `MIN_ROWS` are padded with zero rows up to it and the padding is dropped.
- Convolutions: oneDNN picks its convolution kernels by batch size; PyTorch's own
  convolution runs image by image over GEMMs, so oneDNN is turned off on the CPU.

CUDA kernels are left alone: there the guarantee is "same device and dtype" and the
fast path matters more (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MIN_ROWS = 8


def _padded(forward: Callable[..., Any]) -> Callable[..., Any]:
    """`forward` of a Linear, with a call of fewer than `MIN_ROWS` rows padded with zero
    rows up to it and the padding dropped from the result. No state is kept between the
    two (a hook pair would have to keep the row count on the module), so torch.compile
    traces it as plain tensor code, fullgraph included."""
    import torch

    def padded_forward(x: Any, *args: Any, **kwargs: Any) -> Any:
        if x.dim() != 2 or x.shape[0] >= MIN_ROWS:
            return forward(x, *args, **kwargs)
        rows = x.shape[0]
        return forward(torch.cat([x, x.new_zeros(MIN_ROWS - rows, x.shape[1])]), *args, **kwargs)[:rows]

    return padded_forward


def make_batch_invariant(pipeline: Any) -> None:
    """Make `pipeline`'s CPU arithmetic independent of the batch it runs in."""
    import torch

    torch.backends.mkldnn.enabled = False
    for component in pipeline.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        for module in component.modules():
            if isinstance(module, torch.nn.Linear):
                module.forward = _padded(module.forward)
