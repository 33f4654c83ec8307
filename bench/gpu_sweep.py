"""The GPU benchmark's compile sweep: candidate compile modes and CUDA-graph captures, timed at
SD 1.5 batch 1 on the server path's (QKV fused, channels_last) UNet.
"""

from __future__ import annotations

from .gpu_harness import SWEEP_AUTOTUNE_ESTIMATE, Bench


def sweep(bench: Bench, model, arch: dict) -> None:
    """Compile candidates at batch 1 on the server path's (fused, channels_last) UNet."""
    import torch._dynamo

    from inference.engine.compiled_shapes import CompiledShapes, gate_forward
    from inference.engine.fast_path import AUTO_INDUCTOR, MAX_INDUCTOR

    from .cuda_graph import capture_forward

    unet = model.text2img.unet
    call = bench.engine_caller(model, arch["resolution"])
    graphs = bench.device == "cuda"
    candidates = [
        ("inductor default, fullgraph (no CUDA graphs)", dict(fullgraph=True), None, AUTO_INDUCTOR, False),
        # The `auto` preset with its batch dimension symbolic: one compile for every bucket.
        ("reduce-overhead, batch dimension dynamic", dict(mode="reduce-overhead", fullgraph=True), "dynamic-batch",
         AUTO_INDUCTOR, False),
        ("reduce-overhead + coordinate-descent tuning", dict(mode="reduce-overhead", fullgraph=True), None,
         MAX_INDUCTOR, False),
        ("reduce-overhead, no fullgraph", dict(mode="reduce-overhead", fullgraph=False), None, AUTO_INDUCTOR, False),
        ("inductor default + CUDA graph outside inductor", dict(fullgraph=True), "outside", AUTO_INDUCTOR, False),
        ("eager + CUDA graph (no compile)", None, "outside", AUTO_INDUCTOR, False),
        ("max-autotune-no-cudagraphs", dict(mode="max-autotune-no-cudagraphs", fullgraph=True), None, MAX_INDUCTOR, True),
        ("max-autotune (CUDA graphs inside, the --compile max preset)", dict(mode="max-autotune", fullgraph=True), None,
         MAX_INDUCTOR, True),
    ]
    import torch._inductor.config as inductor_config

    def prepare_and_measure(name, options, graph, inductor):
        torch._dynamo.reset()
        for key, value in inductor.items():
            setattr(inductor_config, key, value)
        unet._compiled_call_impl = None  # undo nn.Module.compile
        unet.__dict__.pop("forward", None)  # undo an earlier capture or gate
        if graph == "dynamic-batch":
            automatic = torch._dynamo.config.automatic_dynamic_shapes
            torch._dynamo.config.automatic_dynamic_shapes = False
            try:
                gate_forward(unet, "unet", torch.compile, CompiledShapes(), timestep_as_float=True, dynamic_batch=True,
                             dynamic=None, **options)
                row = bench.measure(call, arch, name, 1, path="engine", candidate=True)
                # Batch 4 (8 rows) on the same compiled graph: its first call should only
                # record a CUDA graph, not compile (first_call_s says which).
                bench.measure(call, arch, name, 4, path="engine", candidate=True)
                return row
            finally:
                torch._dynamo.config.automatic_dynamic_shapes = automatic
        if options is not None and graph is None:
            unet.compile(dynamic=False, **options)
        elif graph == "outside":
            forward = type(unet).forward.__get__(unet)
            if options is not None:
                forward = torch.compile(forward, dynamic=False, **options)
            unet.forward = capture_forward(forward)
        return bench.measure(call, arch, name, 1, path="engine", candidate=True)

    for name, options, graph, inductor, autotune in candidates:
        needs_graphs = graph == "outside" or (options or {}).get("mode") in ("reduce-overhead", "max-autotune")
        if needs_graphs and not graphs:
            continue  # CUDA graphs need CUDA
        if not bench.fits("sd15-sweep", SWEEP_AUTOTUNE_ESTIMATE if autotune else None):
            continue
        bench.attempt(f"sweep {name}", prepare_and_measure, name, options, graph, inductor)
    unet.__dict__.pop("forward", None)
