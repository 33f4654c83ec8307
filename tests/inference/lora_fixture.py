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
