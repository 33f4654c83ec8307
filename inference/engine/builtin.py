"""Embedded default models: tiny Stable Diffusion pipelines with deterministic random weights.

`builtin:tiny` (SD 1.x shaped) and `builtin:tiny-sdxl` (SDXL shaped: two text encoders,
text-time conditioning) are written once into the cache directory with `save_pretrained`
and then loaded through the same `from_pretrained` path as a Hub model. They need no
network, so tests and `make run` work anywhere. Their images are noise; everything around
them (tokenizer, schedulers, VAE, batching, PNG metadata) is real.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

BUILTIN_PREFIX = "builtin:"
# Bump when the architecture below changes, so stale caches are rebuilt, never reused.
# 3: the VAE downsamples by 8 as the real models' does (1 downsampled by 2; 2 had a
# text encoder that was not batch-invariant on the CPU).
BUILTIN_FORMAT_VERSION = 3
BUILTIN_NAMES = ("tiny", "tiny-sdxl")
_SEED = 0


def is_builtin(model: str) -> bool:
    return model.startswith(BUILTIN_PREFIX)


def builtin_name(model: str) -> str:
    name = model[len(BUILTIN_PREFIX) :]
    if name not in BUILTIN_NAMES:
        allowed = ", ".join(BUILTIN_PREFIX + n for n in BUILTIN_NAMES)
        raise ValueError(f"unknown builtin model {model!r}; allowed: {allowed}")
    return name


def builtin_path(model: str, cache_dir: Path) -> Path:
    return Path(cache_dir) / "builtin" / f"{builtin_name(model)}-v{BUILTIN_FORMAT_VERSION}"


def ensure_builtin(model: str, cache_dir: Path) -> Path:
    """Return the directory of the builtin pipeline, building it on first use.

    The build goes to a temporary sibling directory that is renamed into place, so a
    crash or a concurrent builder never leaves a half-written model behind.
    """
    target = builtin_path(model, cache_dir)
    if (target / "model_index.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        pipeline = _build(builtin_name(model), staging / "tokenizer-files")
        pipeline.save_pretrained(staging / "pipeline")
        try:
            os.rename(staging / "pipeline", target)
        except OSError:
            if not (target / "model_index.json").exists():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _bytes_to_unicode() -> dict[int, str]:
    # CLIP's byte-level BPE alphabet (the GPT-2 table): every byte gets a printable character.
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


def _tokenizer(files_dir: Path):
    """A CLIP tokenizer over a byte-level vocabulary with no merges: any text tokenizes."""
    from transformers import CLIPTokenizer

    files_dir.mkdir(parents=True, exist_ok=True)
    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    (files_dir / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (files_dir / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(str(files_dir / "vocab.json"), str(files_dir / "merges.txt"), model_max_length=77)


def _text_config(tokenizer, **overrides):
    from transformers import CLIPTextConfig

    settings = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        # A multiple of 16: an element-wise op over a tensor whose size is not a multiple
        # of the SIMD width computes its tail with scalar code, which rounds differently,
        # and an image alone is the tail where batched it is not (batch invariance).
        intermediate_size=64,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=32,
    )
    settings.update(overrides)
    return CLIPTextConfig(**settings)


def _vae():
    from diffusers import AutoencoderKL

    # Four blocks, so the latent is 1/8 of the image as in every real SD VAE: clients'
    # 512x512 and 1024x1024 defaults become 64x64 and 128x128 latents, which a CPU denoises
    # in seconds. The blocks are narrow (4 to 16 channels): decoding cost grows with the
    # pixels, and the weights are random anyway. No attention in the mid block: at 1024x1024
    # its 16384-token attention matrix alone would take a gigabyte per image.
    return AutoencoderKL(
        block_out_channels=(4, 8, 16, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        sample_size=64,
        norm_num_groups=4,
        mid_block_add_attention=False,
    )


def _scheduler():
    from diffusers import EulerDiscreteScheduler

    # The noise schedule of SD 1.x / SDXL, so sampler switching behaves as on real models.
    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
    )


def _build(name: str, files_dir: Path):
    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(_SEED)  # the weights are random but the same on every machine
    tokenizer = _tokenizer(files_dir)
    common_unet = dict(
        # Narrow: a 512x512 request is a 64x64 latent, denoised 20 times (x2 for CFG).
        block_out_channels=(16, 32),
        layers_per_block=1,
        # 8 latent pixels x the VAE's 8: a request without a size gets 64x64 (fast tests),
        # and two down blocks still work on the 8x8 latent of a 64x64 image.
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=(2, 4),
    )
    if name == "tiny":
        return StableDiffusionPipeline(
            vae=_vae(),
            text_encoder=CLIPTextModel(_text_config(tokenizer)),
            tokenizer=tokenizer,
            unet=UNet2DConditionModel(cross_attention_dim=32, **common_unet),
            scheduler=_scheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    # SDXL: the UNet is conditioned on the concatenated hidden states of both encoders
    # (32 + 32) and on text_time embeddings (6 size/crop values x 8 + pooled 32 = 80).
    return StableDiffusionXLPipeline(
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config(tokenizer)),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(tokenizer)),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=UNet2DConditionModel(
            cross_attention_dim=64,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=80,
            transformer_layers_per_block=(1, 1),
            use_linear_projection=True,
            **common_unet,
        ),
        scheduler=_scheduler(),
        force_zeros_for_empty_prompt=True,
    )
