"""CUDA graphs captured outside inductor, for the compile sweep in bench/gpu_sweep.py.

`capture_forward(forward)` returns a forward that, per input signature (shapes, dtypes
and the non-tensor arguments), warms `forward` up on a side stream, captures one call in
a `torch.cuda.CUDAGraph` with static input buffers, and from then on copies the inputs in
and replays. Outputs are cloned: the next replay overwrites the graph's own. This is what
stable-fast and hand-written runners do around an eager or compiled UNet; inductor's
`reduce-overhead` mode does the same inside the compiled code ("CUDA graph trees").
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten


def _signature(flat: list[Any]) -> tuple:
    return tuple((tuple(v.shape), v.dtype, v.device) if isinstance(v, torch.Tensor) else ("const", repr(v)) for v in flat)


def capture_forward(forward: Callable[..., Any], warmup_calls: int = 2) -> Callable[..., Any]:
    graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list[Any], Any]] = {}

    def graphed(*args: Any, **kwargs: Any) -> Any:
        flat, spec = tree_flatten((args, kwargs))
        key = (str(spec), _signature(flat))
        entry = graphs.get(key)
        if entry is None:
            static = [v.clone() if isinstance(v, torch.Tensor) else v for v in flat]
            static_args, static_kwargs = tree_unflatten(static, spec)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(warmup_calls):
                    forward(*static_args, **static_kwargs)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                output = forward(*static_args, **static_kwargs)
            entry = graphs[key] = (graph, static, output)
        graph, static, output = entry
        for buffer, value in zip(static, flat, strict=True):
            if isinstance(buffer, torch.Tensor):
                buffer.copy_(value)
        graph.replay()
        return tree_map(lambda v: v.clone() if isinstance(v, torch.Tensor) else v, output)

    return graphed
