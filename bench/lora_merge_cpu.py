"""What merging a LoRA adapter into SD 1.5's UNet costs per switch, on this CPU.

`inference/engine/lora_merge.py` writes `original + weight x delta` into every weight an
adapter targets when a batch's adapter set differs from the last one's, and copies the
originals back for a batch without adapters. This measures both on SD 1.5's UNet
(published config, random weights, float32) with a rank-16 adapter on the attention
projections (to_q, to_k, to_v, to_out.0; the usual kohya/diffusers target set), built
through PEFT and loaded the way the server loads it, plus the memory the kept originals
take. A GPU does the same work (one small matmul and a copy per weight) in a fraction of
the time; the CPU figure is the upper bound.

    python -m bench.lora_merge_cpu --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time


def add_random_attention_lora(unet, rank: int, name: str = "style") -> None:
    """A rank-`rank` adapter on the attention projections (to_q, to_k, to_v, to_out.0),
    made with PEFT, its B factors random (PEFT starts them at zero: a no-op adapter)."""
    import torch
    from peft import LoraConfig

    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                   target_modules=["to_q", "to_k", "to_v", "to_out.0"]),
        adapter_name=name,
    )
    with torch.no_grad():
        for parameter_name, parameter in unet.named_parameters():
            if "lora_B" in parameter_name:
                parameter.normal_(std=0.01)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rank", type=int, default=16)
    args = parser.parse_args(argv)

    import torch
    from diffusers import UNet2DConditionModel

    from inference.engine.lora_merge import UnetAdapters

    torch.manual_seed(0)
    unet = UNet2DConditionModel(cross_attention_dim=768, sample_size=64, attention_head_dim=8).eval()
    unet.requires_grad_(False)
    add_random_attention_lora(unet, args.rank)
    started = time.perf_counter()
    adapters = UnetAdapters.take_from(unet)
    take_seconds = time.perf_counter() - started
    kept = adapters.kept_bytes
    total = sum(parameter.numel() * parameter.element_size() for parameter in unet.parameters())

    merge, restore = [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        adapters.apply((("style", 0.8),))
        merge.append(time.perf_counter() - started)
        started = time.perf_counter()
        adapters.apply(())
        restore.append(time.perf_counter() - started)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, SD 1.5 UNet float32, rank {args.rank} "
          f"on to_q/to_k/to_v/to_out.0: {adapters.weight_count} weights")
    print(f"take_from (detach PEFT layers, keep originals): {take_seconds:.2f} s")
    print(f"originals kept: {kept / 2**20:.0f} MiB of the UNet's {total / 2**20:.0f} MiB ({kept / total:.1%}); "
          f"half that in float16")
    print(f"switch to the adapter (merge), median of {args.rounds}: {statistics.median(merge) * 1000:.0f} ms "
          f"(all: {', '.join(f'{s * 1000:.0f}' for s in merge)})")
    print(f"switch back (restore), median of {args.rounds}: {statistics.median(restore) * 1000:.0f} ms "
          f"(all: {', '.join(f'{s * 1000:.0f}' for s in restore)})")


if __name__ == "__main__":
    main()
