"""Architectures for bench/gpu.py, written from the published model configs.

SD 1.5: runwayml/stable-diffusion-v1-5 (unet/config.json, vae/config.json,
text_encoder/config.json). SDXL: stabilityai/stable-diffusion-xl-base-1.0 (unet, vae,
text_encoder, text_encoder_2). Same layer shapes, so the same FLOPs; the weights are
random (no download). `smoke` variants keep the wiring and shrink every dimension so the
benchmark's code runs on a CPU in seconds.
"""

from __future__ import annotations

SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    steps_offset=1,
    prediction_type="epsilon",
    timestep_spacing="leading",
)

_VAE = dict(
    act_fn="silu",
    block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    norm_num_groups=32,
)

_CLIP_L = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=768,
)

SD15 = dict(
    name="SD 1.5",
    pipeline="StableDiffusionPipeline",
    resolution=512,
    unet=dict(
        act_fn="silu",
        attention_head_dim=8,
        block_out_channels=[320, 640, 1280, 1280],
        cross_attention_dim=768,
        down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        downsample_padding=1,
        flip_sin_to_cos=True,
        freq_shift=0,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        mid_block_scale_factor=1,
        norm_eps=1e-5,
        norm_num_groups=32,
        sample_size=64,
    ),
    vae=dict(_VAE, sample_size=512, scaling_factor=0.18215),
    text_encoders=[dict(_CLIP_L)],
)

SDXL = dict(
    name="SDXL",
    pipeline="StableDiffusionXLPipeline",
    resolution=1024,
    unet=dict(
        act_fn="silu",
        addition_embed_type="text_time",
        addition_embed_type_num_heads=64,
        addition_time_embed_dim=256,
        attention_head_dim=[5, 10, 20],
        block_out_channels=[320, 640, 1280],
        cross_attention_dim=2048,
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        downsample_padding=1,
        flip_sin_to_cos=True,
        freq_shift=0,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        mid_block_scale_factor=1,
        norm_eps=1e-5,
        norm_num_groups=32,
        projection_class_embeddings_input_dim=2816,
        sample_size=128,
        transformer_layers_per_block=[1, 2, 10],
        use_linear_projection=True,
    ),
    # force_upcast: the published SDXL VAE decodes in fp32 even in an fp16 pipeline.
    vae=dict(_VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True),
    text_encoders=[
        dict(_CLIP_L),
        dict(
            vocab_size=49408,
            hidden_size=1280,
            intermediate_size=5120,
            num_hidden_layers=32,
            num_attention_heads=20,
            max_position_embeddings=77,
            hidden_act="gelu",
            projection_dim=1280,
        ),
    ],
)


def _smoke_vae(**extra):
    return dict(_VAE, block_out_channels=[32, 32], down_block_types=["DownEncoderBlock2D"] * 2,
                up_block_types=["UpDecoderBlock2D"] * 2, layers_per_block=1, **extra)


def _smoke_clip(hidden: int, act: str):
    return dict(vocab_size=1000, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=77, hidden_act=act, projection_dim=hidden)


SD15_SMOKE = dict(
    SD15,
    name="SD 1.5 (smoke)",
    resolution=64,
    unet=dict(SD15["unet"], block_out_channels=[32, 64], attention_head_dim=4, cross_attention_dim=32,
              layers_per_block=1, down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
              up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], sample_size=32),
    vae=_smoke_vae(sample_size=64, scaling_factor=0.18215),
    text_encoders=[_smoke_clip(32, "quick_gelu")],
)

SDXL_SMOKE = dict(
    SDXL,
    name="SDXL (smoke)",
    resolution=64,
    unet=dict(SDXL["unet"], block_out_channels=[32, 64], attention_head_dim=[2, 4], cross_attention_dim=64,
              layers_per_block=1, down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
              up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"], transformer_layers_per_block=[1, 1],
              addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32, sample_size=32),
    vae=_smoke_vae(sample_size=64, scaling_factor=0.13025, force_upcast=True),
    text_encoders=[_smoke_clip(32, "quick_gelu"), _smoke_clip(32, "gelu")],
)
