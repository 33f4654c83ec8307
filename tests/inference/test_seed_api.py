"""The seed API over real HTTP against `python -m inference serve` on the builtin models."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from PIL import Image

from inference.engine.samplers import sampler_names
from inference.infotext import parse_infotext

from .conftest import decode_png, info_of, png_b64

SMALL = {"width": 64, "height": 64, "steps": 4}


def test_bare_prompt_returns_one_png_with_its_parameters(tiny):
    response = tiny.post("/v1/txt2img", json={"prompt": "a lighthouse at dusk"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["images"]) == 1
    assert not body["images"][0].startswith("data:")
    image = decode_png(body["images"][0])
    assert image.size == (64, 64)  # builtin:tiny's native size is the default
    info = info_of(response)
    assert info["prompt"] == "a lighthouse at dusk"
    assert info["width"] == 64 and info["steps"] == 20
    assert info["sd_model_name"] == "builtin:tiny"
    assert body["parameters"]["prompt"] == "a lighthouse at dusk"


def test_same_seed_same_bytes_and_different_seeds_differ(tiny):
    def image(seed):
        response = tiny.post("/v1/txt2img", json={"prompt": "a red fox", "seed": seed, **SMALL})
        assert response.status_code == 200
        return response.json()["images"][0]

    first, again, other = image(1234), image(1234), image(1235)
    assert first == again
    assert np.asarray(decode_png(first)).tobytes() != np.asarray(decode_png(other)).tobytes()


def test_random_seed_is_reported_and_reproduces_the_image(tiny):
    response = tiny.post("/v1/txt2img", json={"prompt": "moss", "seed": -1, **SMALL})
    info = info_of(response)
    assert isinstance(info["seed"], int) and 0 <= info["seed"] < 2**32
    assert info["all_seeds"] == [info["seed"]]
    replay = tiny.post("/v1/txt2img", json={"prompt": "moss", "seed": info["seed"], **SMALL})
    assert replay.json()["images"] == response.json()["images"]


def test_batch_and_iterations_use_consecutive_seeds(tiny):
    response = tiny.post("/v1/txt2img", json={"prompt": "kites", "seed": 10, "batch_size": 2, "n_iter": 2, **SMALL})
    assert response.status_code == 200, response.text
    info = info_of(response)
    assert info["all_seeds"] == [10, 11, 12, 13]
    assert len(response.json()["images"]) == 4
    assert len(info["infotexts"]) == 4
    # image 2 of the batch is the image a single request with seed 12 makes
    single = tiny.post("/v1/txt2img", json={"prompt": "kites", "seed": 12, **SMALL})
    assert np.array_equal(
        np.asarray(decode_png(single.json()["images"][0])), np.asarray(decode_png(response.json()["images"][2]))
    )


def test_png_parameters_chunk_round_trips(tiny):
    request = {
        "prompt": "a quiet harbour, oil painting",
        "negative_prompt": "blurry, text",
        "seed": 77,
        "cfg_scale": 5.5,
        "sampler_name": "DPM++ 2M",
        "scheduler": "karras",
        **SMALL,
    }
    response = tiny.post("/v1/txt2img", json=request)
    assert response.status_code == 200, response.text
    image = decode_png(response.json()["images"][0])
    text = image.text["parameters"]
    assert text == info_of(response)["infotexts"][0]
    parsed = parse_infotext(text)
    assert parsed["Prompt"] == request["prompt"]
    assert parsed["Negative prompt"] == request["negative_prompt"]
    assert parsed["Seed"] == 77
    assert parsed["Steps"] == 4
    assert parsed["CFG scale"] == 5.5
    assert parsed["Sampler"] == "DPM++ 2M"
    assert parsed["Schedule type"] == "karras"
    assert (parsed["Size-1"], parsed["Size-2"]) == (64, 64)
    assert parsed["Model"] == "builtin:tiny"


def test_legacy_sampler_name_with_schedule_and_camel_case_cfg(tiny):
    response = tiny.post(
        "/v1/txt2img", json={"prompt": "x", "sampler_index": "DPM++ 2M Karras", "cfgScale": 3, "unknown_field": 1, **SMALL}
    )
    assert response.status_code == 200, response.text
    info = info_of(response)
    assert (info["sampler_name"], info["scheduler"], info["cfg_scale"]) == ("DPM++ 2M", "karras", 3.0)


@pytest.mark.parametrize("sampler", sampler_names())
def test_every_listed_sampler_generates(tiny, sampler):
    response = tiny.post("/v1/txt2img", json={"prompt": "x", "sampler_name": sampler, "seed": 1, **SMALL})
    assert response.status_code == 200, response.text
    assert info_of(response)["sampler_name"] == sampler


def _init_image() -> Image.Image:
    gradient = np.linspace(0, 255, 64, dtype=np.uint8)
    return Image.fromarray(np.stack([np.tile(gradient, (64, 1))] * 3, axis=-1))


def test_img2img_is_deterministic_and_uses_the_init_image(tiny):
    init = png_b64(_init_image())
    other = png_b64(Image.new("RGB", (64, 64), (200, 30, 30)))
    request = {"prompt": "x", "seed": 3, "denoising_strength": 0.5, **SMALL}
    a = tiny.post("/v1/img2img", json={**request, "init_images": [init]})
    b = tiny.post("/v1/img2img", json={**request, "init_images": ["data:image/png;base64," + init]})
    c = tiny.post("/v1/img2img", json={**request, "init_images": [other]})
    assert a.status_code == b.status_code == c.status_code == 200, a.text
    assert a.json()["images"] == b.json()["images"]  # raw base64 and data URL are the same input
    assert a.json()["images"] != c.json()["images"]
    assert decode_png(a.json()["images"][0]).size == (64, 64)
    info = info_of(a)
    assert info["denoising_strength"] == 0.5
    assert a.json()["parameters"]["init_images"] is None  # not echoed unless include_init_images


def test_img2img_resizes_init_images_to_the_requested_size(tiny):
    init = png_b64(Image.new("RGB", (100, 40), (0, 90, 200)))
    response = tiny.post("/v1/img2img", json={"prompt": "x", "init_images": [init], "resize_mode": 1, **SMALL})
    assert response.status_code == 200, response.text
    assert decode_png(response.json()["images"][0]).size == (64, 64)


def test_inpainting_repaints_only_the_masked_region(tiny):
    init_image = _init_image()
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))  # white: repaint
    response = tiny.post(
        "/v1/img2img",
        json={"prompt": "x", "seed": 5, "init_images": [png_b64(init_image)], "mask": png_b64(mask), "mask_blur": 0, **SMALL},
    )
    assert response.status_code == 200, response.text
    result = np.asarray(decode_png(response.json()["images"][0]).convert("RGB")).astype(int)
    original = np.asarray(init_image).astype(int)
    assert np.array_equal(result[:16], original[:16]) and np.array_equal(result[48:], original[48:])
    assert np.abs(result[16:48, 16:48] - original[16:48, 16:48]).mean() > 5

    inverted = tiny.post(
        "/v1/img2img",
        json={"prompt": "x", "seed": 5, "init_images": [png_b64(init_image)], "mask": png_b64(mask), "mask_blur": 0,
              "inpainting_mask_invert": 1, **SMALL},
    )
    result = np.asarray(decode_png(inverted.json()["images"][0]).convert("RGB")).astype(int)
    assert np.array_equal(result[16:48, 16:48], original[16:48, 16:48])  # the inside is kept now
    assert np.abs(result[:16] - original[:16]).mean() > 5


def test_sdxl_txt2img_and_img2img(sdxl_server):
    with httpx.Client(base_url=sdxl_server.url, timeout=120) as sdxl:
        a = sdxl.post("/v1/txt2img", json={"prompt": "a castle", "seed": 9, **SMALL})
        b = sdxl.post("/v1/txt2img", json={"prompt": "a castle", "seed": 9, **SMALL})
        c = sdxl.post("/v1/txt2img", json={"prompt": "a castle", "seed": 10, **SMALL})
        assert a.status_code == 200, a.text
        assert a.json()["images"] == b.json()["images"] != c.json()["images"]
        assert info_of(a)["sd_model_name"] == "builtin:tiny-sdxl"
        assert parse_infotext(decode_png(a.json()["images"][0]).text["parameters"])["Seed"] == 9
        i2i = sdxl.post("/v1/img2img", json={"prompt": "x", "init_images": [a.json()["images"][0]], "seed": 1, **SMALL})
        assert i2i.status_code == 200, i2i.text
        assert decode_png(i2i.json()["images"][0]).size == (64, 64)
        assert i2i.json()["images"][0] != a.json()["images"][0]


def test_send_images_false_returns_info_only(tiny):
    response = tiny.post("/v1/txt2img", json={"prompt": "x", "send_images": False, "seed": 2, **SMALL})
    assert response.status_code == 200
    assert response.json()["images"] == []
    assert info_of(response)["seed"] == 2


def test_health_and_docs(tiny):
    assert tiny.get("/healthz").json() == {"status": "ok"}
    ready = tiny.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert "swagger" in tiny.get("/docs").text.lower()
    paths = tiny.get("/openapi.json").json()["paths"]
    assert {"/v1/txt2img", "/v1/img2img", "/healthz", "/readyz"} <= set(paths)
    schema = tiny.get("/openapi.json").json()["components"]["schemas"]["Txt2ImgRequest"]
    assert "prompt" in schema["properties"] and "cfg_scale" in schema["properties"]


def test_base64_helper_accepts_unpadded_input(tiny):
    init = png_b64(_init_image()).rstrip("=")
    response = tiny.post("/v1/img2img", json={"prompt": "x", "init_images": [init], **SMALL})
    assert response.status_code == 200, response.text
    assert base64.b64decode(response.json()["images"][0])[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_sampler_leaves_nothing_behind_for_the_next_request(tiny):
    request = {"prompt": "x", "sampler_name": "Euler", "seed": 8, **SMALL}
    before = tiny.post("/v1/txt2img", json=request).json()["images"]
    for other in ("DPM++ 2M SDE", "UniPC", "DDIM"):
        assert tiny.post("/v1/txt2img", json={**request, "sampler_name": other, "scheduler": "automatic"}).status_code == 200
    assert tiny.post("/v1/txt2img", json=request).json()["images"] == before
