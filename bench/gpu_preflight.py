"""Before the GPU benchmark's servers: do precompiled forwards work on this machine's torch?

`--precompile auto` compiles each warmed shape ahead of time. Where that fails after the
compile (say, a CUDA graph setting the artifact cannot carry), the server falls back to
dynamo, which compiles the shape again: inductor's entries of the two paths differ, so a
cold start would take twice as long, and the lent machine's minutes with it. A toy module
with the `auto` preset's UNet settings (CUDA graphs, inductor options, fp16, channels_last)
goes through the server's own `PrecompiledForward` first: compiled and saved, then loaded
by a fresh one and run. Seconds; if it fails, the run's servers get `--precompile off` and
the notes say why.

The same toy then checks what LoRA adapters rely on (`inference/engine/lora_merge.py`):
a weight changed in place between calls is what the next replay of the loaded artifact's
CUDA graphs computes with. Its result is a note (no stage runs adapters).
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def precompile_works(device: str, dtype) -> tuple[bool, str]:
    """(works, what happened): a toy forward compiled ahead of time, saved, loaded, run."""
    import torch

    from inference.engine.fast_path import AUTO_INDUCTOR, choose_fast_path
    from inference.engine.precompiled import PrecompiledForward, PrecompiledStore, inductor_options

    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(4, 32, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(32, 32, 1), torch.nn.GroupNorm(8, 32),
        torch.nn.Conv2d(32, 4, 3, padding=1),
    ).to(device=device, dtype=dtype).eval()
    if device == "cuda":
        module.to(memory_format=torch.channels_last)
    sample = torch.randn(2, 4, 32, 32, device=device, dtype=dtype)
    mode = choose_fast_path("auto", "cuda").unet_compile_mode
    for name, value in AUTO_INDUCTOR.items():
        setattr(torch._inductor.config, name, value)
    with tempfile.TemporaryDirectory(prefix="sd-preflight-") as directory, torch.no_grad():
        store = PrecompiledStore(Path(directory))

        def forward() -> PrecompiledForward:
            return PrecompiledForward(name="preflight", module=module, identity="toy", compile_function=torch.compile,
                                      options=inductor_options(mode), store=lambda: store)

        def fallback(*args, **kwargs):  # where the server would use dynamo: eager here, the counts tell
            return module(*args, **kwargs)

        signature = ("toy", tuple(sample.shape))
        expected = module(sample)
        compiled = forward().run(signature, (sample,), {}, fallback).clone()
        loaded_forward = forward()
        loaded = [loaded_forward.run(signature, (sample,), {}, fallback).clone() for _ in range(3)][-1]
        if (store.saved, store.loaded) != (1, 1):
            failed = "; ".join(path.read_text().strip() for path in Path(directory).glob("*.failed"))
            return False, f"saved {store.saved}, loaded {store.loaded}: {failed or 'see the log'}"
        error = max((compiled.float() - expected.float()).abs().max().item(),
                    (loaded.float() - expected.float()).abs().max().item())
        if error > 0.05:
            return False, f"the precompiled forward's output differs from eager by {error:.3g}"
        merged = _in_place_change_seen(module, sample, lambda: loaded_forward.run(signature, (sample,), {}, fallback))
        return True, (f"compiled, saved, loaded and run ({mode}; largest difference from eager {error:.3g}; "
                      f"{store.summary()}); {merged}")


def _in_place_change_seen(module, sample, replay) -> str:
    """A merged LoRA's path: change a weight in place (as `lora_merge` does), replay, compare
    with eager on the changed weight, put the weight back, replay again."""
    weight = module[2].weight
    original = weight.clone()
    weight.add_(0.5)
    try:
        expected = module(sample)
        changed = replay().clone()
    finally:
        weight.copy_(original)
    restored = replay().clone()
    changed_error = (changed.float() - expected.float()).abs().max().item()
    restored_error = (restored.float() - module(sample).float()).abs().max().item()
    seen = changed_error <= 0.05 and restored_error <= 0.05
    return (f"a weight changed in place {'is' if seen else 'is NOT'} seen by the replayed artifact (LoRA merging: "
            f"difference from eager {changed_error:.3g} changed, {restored_error:.3g} restored)")
