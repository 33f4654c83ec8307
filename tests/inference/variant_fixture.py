"""Small "Hub repos" shaped like real Stable Diffusion repos, built from builtin:tiny.

`both`: every component in full precision and as the fp16 variant, plus what a real repo
also carries and a server never loads: a safety checker, a single-file checkpoint and a
.ckpt at the root, pickled .bin duplicates. `mixed`: the same without the text encoder's
fp16 file (diffusers then loads that component's default weights). `fp32-only`: no fp16
variant at all.

The fp16 files hold the negated weights, so the weights a load ends up with tell which
file they came from (`tensor_sums`, `same_weights`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx")
LOADED_COMPONENTS = ("unet", "vae", "text_encoder")


def is_weight_file(path: str) -> bool:
    return path.endswith(WEIGHT_SUFFIXES)


def build_repos(builtin_dir: Path, target: Path) -> dict[str, Path]:
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    small = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    safety_checker = StableDiffusionSafetyChecker(CLIPConfig(
        text_config={**small, "vocab_size": 1000},
        vision_config={**small, "image_size": 32, "patch_size": 4},
        projection_dim=32,
    ))
    pipeline = StableDiffusionPipeline.from_pretrained(str(builtin_dir), safety_checker=None, requires_safety_checker=False)
    pipeline = StableDiffusionPipeline(
        **{name: getattr(pipeline, name) for name in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")},
        safety_checker=safety_checker,
        feature_extractor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        requires_safety_checker=True,
    )
    both = target / "both"
    pipeline.save_pretrained(both)
    fp32_only = target / "fp32-only"
    shutil.copytree(both, fp32_only)
    # Real repos also carry files no diffusers load reads: single-file checkpoints at the
    # root and pickled duplicates of the safetensors weights.
    for repo in (both, fp32_only):
        shutil.copy(both / "unet" / "diffusion_pytorch_model.safetensors", repo / "tiny-sd-single-file.safetensors")
        (repo / "tiny-sd.ckpt").write_bytes(b"not a real checkpoint")
        torch.save(pipeline.unet.state_dict(), repo / "unet" / "diffusion_pytorch_model.bin")
        torch.save(pipeline.text_encoder.state_dict(), repo / "text_encoder" / "pytorch_model.bin")
    with torch.no_grad():
        for module in (pipeline.unet, pipeline.vae, pipeline.text_encoder, pipeline.safety_checker):
            module.to(torch.float16)
            for parameter in module.parameters():
                parameter.neg_()
    pipeline.save_pretrained(both, variant="fp16")
    mixed = target / "mixed"
    shutil.copytree(both, mixed)
    (mixed / "text_encoder" / "model.fp16.safetensors").unlink()
    return {"both": both, "mixed": mixed, "fp32-only": fp32_only}


def tensor_sums(state_dict) -> dict[str, float]:
    """Each floating tensor's sum, as float64: enough to tell a file's weights from the
    negated fp16 variant's, and loaded weights from the file they came from."""
    return {key: float(t.double().sum()) for key, t in state_dict.items() if t.is_floating_point()}


def file_sums(path: Path) -> dict[str, float]:
    from safetensors.torch import load_file

    return tensor_sums(load_file(str(path)))


def same_weights(loaded: dict[str, float], stored: dict[str, float]) -> bool:
    """Loaded sums equal a file's, up to fp16 rounding when full precision was loaded as fp16."""
    return loaded.keys() == stored.keys() and all(
        abs(loaded[k] - stored[k]) <= 1e-3 + 1e-2 * abs(stored[k]) for k in stored
    )
