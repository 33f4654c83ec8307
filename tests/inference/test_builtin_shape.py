"""The embedded models are shaped like the real ones where it matters to clients: the VAE
downsamples by 8, so A1111 clients' 512x512 and 1024x1024 defaults are cheap latents."""

from __future__ import annotations

import pytest

from inference.engine.builtin import BUILTIN_FORMAT_VERSION, builtin_path, ensure_builtin
from inference.engine.generate import BatchKey, ImageTask, run_batch
from inference.engine.loading import load_model
from inference.engine.samplers import resolve


@pytest.fixture(scope="module", params=["builtin:tiny", "builtin:tiny-sdxl"])
def model(request, cache_dir):
    return load_model(request.param, cache_dir=cache_dir)


def _key(model, size: int, steps: int = 2) -> BatchKey:
    return BatchKey(
        model=model.name, kind="txt2img", width=size, height=size, steps=steps,
        sampler=resolve("Euler a", None), cfg_scale=7.0,
    )


def test_vae_downsamples_by_eight_like_real_models(model):
    pipe = model.text2img
    assert len(pipe.vae.config.block_out_channels) == 4
    assert pipe.vae_scale_factor == 8
    assert model.native_size == (64, 64)  # requests without a size stay fast


def test_the_unet_works_on_an_8x8_latent_and_a_512_image(model):
    small = run_batch(model, _key(model, 64), [ImageTask("a boat", "", 1)])
    assert small[0].size == (64, 64)
    large = run_batch(model, _key(model, 512, steps=1), [ImageTask("a boat", "", 1)])
    assert large[0].size == (512, 512)


def test_a_cache_of_the_old_format_is_not_reused(cache_dir):
    assert builtin_path("builtin:tiny", cache_dir).name == f"tiny-v{BUILTIN_FORMAT_VERSION}"
    assert BUILTIN_FORMAT_VERSION >= 2  # v1 downsampled by 2
    stale = cache_dir / "builtin" / "tiny-v1"
    stale.mkdir(parents=True, exist_ok=True)
    (stale / "model_index.json").write_text("{}")
    assert ensure_builtin("builtin:tiny", cache_dir) != stale
