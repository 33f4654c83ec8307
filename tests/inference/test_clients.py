"""The real third-party clients, unchanged, against the running server: the `openai`
SDK (images.generate, models.list) and `webuiapi` (an AUTOMATIC1111 client)."""

from __future__ import annotations

import io
import threading
import time

import httpx
import openai
import pytest
import webuiapi
from PIL import Image

from inference.infotext import parse_infotext

from .conftest import decode_png

SMALL = {"width": 64, "height": 64, "steps": 2}


@pytest.fixture(scope="module")
def openai_client(tiny_server):
    # The server has no auth here; the SDK insists on some key.
    return openai.OpenAI(base_url=f"{tiny_server.url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def a1111(tiny_server):
    host, port = tiny_server.url.removeprefix("http://").split(":")
    return webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler a", steps=2)


# -- openai ----------------------------------------------------------------------------


def test_openai_images_generate_b64_json(openai_client):
    result = openai_client.images.generate(
        prompt="a paper boat", n=2, size="64x64", response_format="b64_json", extra_body={"steps": 2, "seed": 11}
    )
    assert isinstance(result.created, int) and len(result.data) == 2
    images = [decode_png(item.b64_json) for item in result.data]
    assert [image.size for image in images] == [(64, 64), (64, 64)]
    seeds = [parse_infotext(image.text["parameters"])["Seed"] for image in images]
    assert seeds == [11, 12]


def test_openai_images_generate_url_is_served_for_a_while(openai_client, tiny_server):
    result = openai_client.images.generate(
        model="dall-e-2", prompt="a lantern", size="64x64", response_format="url", extra_body={"steps": 2}
    )
    url = result.data[0].url
    assert url.startswith(tiny_server.url + "/v1/images/files/") and result.data[0].b64_json is None
    fetched = httpx.get(url)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(fetched.content)).size == (64, 64)
    missing = httpx.get(url.replace("/files/", "/files/x"))
    assert missing.status_code == 404 and "expired" in missing.json()["error"]["message"]


def test_openai_errors_are_readable_by_the_sdk(openai_client):
    with pytest.raises(openai.BadRequestError) as bad_size:
        openai_client.images.generate(prompt="x", size="100x100", extra_body={"steps": 2})
    assert bad_size.value.body["param"] == "size" and "multiple of 8" in bad_size.value.body["message"]
    with pytest.raises(openai.BadRequestError) as bad_model:
        openai_client.images.generate(prompt="x", model="stable-cascade", size="64x64")
    assert bad_model.value.body["param"] == "model" and "builtin:tiny" in bad_model.value.body["message"]


def test_openai_models_list(openai_client):
    models = openai_client.models.list()
    assert [model.id for model in models.data] == ["builtin:tiny"]
    assert openai_client.models.retrieve("builtin:tiny").owned_by == "stable-diffusion-k8s"


# -- webuiapi --------------------------------------------------------------------------


def test_webuiapi_txt2img_and_png_info(a1111):
    result = a1111.txt2img(prompt="a red kite", negative_prompt="rain", seed=21, batch_size=2, cfg_scale=5, **SMALL)
    assert len(result.images) == 2 and result.images[0].size == (64, 64)
    assert result.info["all_seeds"] == [21, 22] and result.info["sampler_name"] == "Euler a"
    assert result.parameters["prompt"] == "a red kite"
    info = a1111.png_info(result.images[1])
    assert info.info.startswith("a red kite\nNegative prompt: rain\n") and "Seed: 22" in info.info
    assert info.parameters["Negative prompt"] == "rain" and info.parameters["CFG scale"] == 5


def test_webuiapi_img2img_with_a_mask(a1111):
    init = Image.new("RGB", (64, 64), (20, 160, 60))
    mask = Image.new("RGB", (64, 64), "black")
    mask.paste((255, 255, 255), (32, 0, 64, 64))
    result = a1111.img2img(images=[init], mask_image=mask, prompt="stones", denoising_strength=0.8, seed=4, **SMALL)
    assert len(result.images) == 1 and result.info["denoising_strength"] == 0.8
    # Unmasked and beyond the default mask_blur (4) of the edge at x=32: untouched.
    left = result.images[0].convert("RGB").crop((0, 0, 16, 64))
    assert left.getcolors() == [(16 * 64, (20, 160, 60))]


def test_webuiapi_options_models_samplers_and_helpers(a1111):
    assert a1111.get_options()["sd_model_checkpoint"] == "builtin:tiny"
    assert a1111.util_get_current_model() == "builtin:tiny"
    assert a1111.util_get_model_names() == ["builtin:tiny"]
    assert "DPM++ 2M Karras" in a1111.util_get_sampler_names()
    assert "karras" in a1111.util_get_scheduler_names()
    a1111.util_set_model("builtin:tiny")  # POST /options with the model's own title
    assert a1111.set_options({"sd_model_checkpoint": "builtin:tiny"}) is None
    assert a1111.get_scripts() == {"txt2img": [], "img2img": []}
    for listing in (a1111.get_loras(), a1111.get_sd_vae(), a1111.get_hypernetworks(), a1111.get_prompt_styles()):
        assert listing == []


def test_webuiapi_progress_and_interrupt(slow_server):
    host, port = slow_server.url.removeprefix("http://").split(":")
    client = webuiapi.WebUIApi(host=host, port=int(port), steps=40)
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(result=client.txt2img(prompt="slow", seed=1, width=64, height=64)))
    thread.start()
    deadline = time.monotonic() + 30
    progress = client.get_progress()
    while progress["state"]["sampling_step"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        progress = client.get_progress()
    assert progress["state"]["sampling_steps"] == 40 and 0 < progress["progress"] < 1
    client.interrupt()
    thread.join(30)
    result = outcome["result"]
    assert len(result.images) == 1 and result.info["interrupted"] is True
    assert client.get_progress()["state"]["interrupted"] is True
