"""The Hub loading path, exercised without a network: a pipeline saved to a local
directory, and the same files laid out as a Hugging Face cache and loaded by repo id."""

from __future__ import annotations

import shutil

import httpx
import pytest

from inference.engine.builtin import ensure_builtin

from .conftest import decode_png, info_of
from .server import ServerProcess

SMALL = {"prompt": "a tiny boat", "seed": 21, "width": 64, "height": 64, "steps": 3}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def saved_pipeline(cache_dir, tmp_path_factory):
    """builtin:tiny written by `save_pretrained` to a directory of its own."""
    target = tmp_path_factory.mktemp("saved") / "tiny-sd"
    shutil.copytree(ensure_builtin("builtin:tiny", cache_dir), target)
    return target


@pytest.fixture(scope="module")
def hub_cache(saved_pipeline, tmp_path_factory):
    """A Hugging Face hub cache holding `acme/tiny-sd` at one commit, as snapshot_download lays it out."""
    cache = tmp_path_factory.mktemp("hub-cache")
    repo = cache / "models--acme--tiny-sd"
    shutil.copytree(saved_pipeline, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


def _pixels(data: str) -> bytes:
    return decode_png(data).tobytes()


def _generate(server) -> httpx.Response:
    response = httpx.post(f"{server.url}/v1/txt2img", json=SMALL, timeout=120)
    assert response.status_code == 200, response.text
    return response


def test_local_directory_and_hub_repo_id_load_the_same_pipeline(tiny_server, saved_pipeline, hub_cache, cache_dir, tmp_path):
    reference = _generate(tiny_server).json()["images"]  # builtin:tiny
    with ServerProcess("--model", str(saved_pipeline), cache_dir=cache_dir, log_path=tmp_path / "dir.log") as local:
        from_dir = _generate(local)
    # HF_HUB_OFFLINE=1 (set by ServerProcess): the repo id resolves in the cache only.
    with ServerProcess(
        "--model", "acme/tiny-sd", "--revision", COMMIT, cache_dir=hub_cache, log_path=tmp_path / "hub.log"
    ) as hub:
        from_hub = _generate(hub)
        assert "StableDiffusionPipeline" in hub.log()
    # Same weights, same seed: the same pixels (the PNG text differs: it names the model).
    assert _pixels(from_dir.json()["images"][0]) == _pixels(reference[0])
    assert _pixels(from_hub.json()["images"][0]) == _pixels(reference[0])
    assert info_of(from_hub)["sd_model_name"] == "acme/tiny-sd"
    assert info_of(from_dir)["sd_model_name"] == str(saved_pipeline)


def test_download_finds_a_cached_repo_offline(hub_cache, tmp_path):
    import os
    import subprocess
    import sys

    from .server import REPO

    result = subprocess.run(
        [sys.executable, "-m", "inference", "download", "--model", "acme/tiny-sd", "--cache-dir", str(hub_cache)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert f"snapshots/{COMMIT}" in result.stdout


def test_derived_pipelines_share_the_loaded_weights(cache_dir):
    from inference.engine.loading import choose_device, load_model

    model = load_model("builtin:tiny", cache_dir=cache_dir, device=choose_device("cpu"))
    img2img, inpaint = model.pipeline("img2img"), model.pipeline("inpaint")
    assert type(img2img).__name__ == "StableDiffusionImg2ImgPipeline"
    assert type(inpaint).__name__ == "StableDiffusionInpaintPipeline"
    for derived in (img2img, inpaint):
        assert derived.unet is model.text2img.unet
        assert derived.vae is model.text2img.vae
        assert derived.text_encoder is model.text2img.text_encoder
    assert model.pipeline("img2img") is img2img  # derived once
    assert model.native_size == (64, 64)
    assert model.device.dtype_name == "float32"
