"""A tiny LoRA for builtin:tiny, made in the test and saved as safetensors through
diffusers' own `save_lora_weights`, so loading it exercises the real path."""

from __future__ import annotations

from pathlib import Path


def make_tiny_lora(base_dir: Path, target: Path, seed: int = 1, text_encoder: bool = False) -> Path:
    """`text_encoder`: the adapter has text encoder layers too (q_proj, v_proj)."""
    import torch
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipeline = StableDiffusionPipeline.from_pretrained(str(base_dir))
    pipeline.unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_k", "to_q", "to_v", "to_out.0"])
    )
    modules = [pipeline.unet]
    if text_encoder:
        pipeline.text_encoder.add_adapter(
            LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["q_proj", "v_proj"])
        )
        modules.append(pipeline.text_encoder)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in modules:
            for name, parameter in module.named_parameters():
                if "lora_B" in name:  # B starts at zero (a no-op adapter); make it do something
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    StableDiffusionPipeline.save_lora_weights(
        str(target),
        unet_lora_layers=get_peft_model_state_dict(pipeline.unet),
        text_encoder_lora_layers=get_peft_model_state_dict(pipeline.text_encoder) if text_encoder else None,
        safe_serialization=True,
    )
    return target


# The layers a kohya-ss (sd-scripts) LoRA for SD 1.5 usually trains, by diffusers module
# name; `resnets.0.conv1` is a LoCon convolution. kohya names a layer `lora_unet_` or
# `lora_te_` + its module path with "_" for ".", with `lora_down`/`lora_up`/`alpha` keys.
KOHYA_UNET_LAYERS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
                     "attn2.to_v", "attn2.to_out.0", "proj_in", "resnets.0.conv1")
KOHYA_TEXT_LAYERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1",
                     "mlp.fc2")


def make_kohya_lora(base_dir: Path, target: Path, rank: int = 4, alpha: float = 2.0) -> Path:
    """A LoRA in the kohya-ss format AUTOMATIC1111 users download (one .safetensors file,
    UNet with a LoCon convolution, text encoder), random, for builtin:tiny."""
    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    pipeline = StableDiffusionPipeline.from_pretrained(str(base_dir))
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for prefix, module_root, wanted in (("lora_unet_", pipeline.unet, KOHYA_UNET_LAYERS),
                                        ("lora_te_", pipeline.text_encoder, KOHYA_TEXT_LAYERS)):
        for name, module in module_root.named_modules():
            if not name.endswith(wanted):
                continue
            weight = module.weight
            kernel = tuple(weight.shape[2:])
            key = prefix + name.replace(".", "_")
            tensors[f"{key}.lora_down.weight"] = torch.randn(rank, weight.shape[1], *kernel, generator=generator) * 0.3
            tensors[f"{key}.lora_up.weight"] = torch.randn(
                weight.shape[0], rank, *((1, 1) if kernel else ()), generator=generator
            ) * 0.3
            tensors[f"{key}.alpha"] = torch.tensor(alpha)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target))
    return target
