"""Bad input gets a 4xx whose message names the field; the server keeps serving."""

from __future__ import annotations

import base64

import pytest

from .conftest import error_text, png_b64

SMALL = {"width": 64, "height": 64, "steps": 2}

# (route, body, expected status, field named in the message). Limits of the tiny_server
# fixture: max 256 px, 50 steps, batch 4, n_iter 3, prompt 300 chars, body 256 KiB.
CASES = [
    ("txt2img", {"width": 65}, 422, "width"),
    ("txt2img", {"height": 100}, 422, "height"),
    ("txt2img", {"width": 512}, 422, "width"),
    ("txt2img", {"height": 32}, 422, "height"),
    ("txt2img", {"steps": 51}, 422, "steps"),
    ("txt2img", {"steps": 0}, 422, "steps"),
    ("txt2img", {"batch_size": 5}, 422, "batch_size"),
    ("txt2img", {"n_iter": 4}, 422, "n_iter"),
    ("txt2img", {"prompt": "x" * 301}, 422, "prompt"),
    ("txt2img", {"negative_prompt": "y" * 301}, 422, "negative_prompt"),
    ("txt2img", {"cfg_scale": "lots"}, 422, "cfg_scale"),
    ("txt2img", {"seed": -5}, 422, "seed"),
    ("txt2img", {"sampler_name": "Imaginary"}, 422, "sampler_name"),
    ("txt2img", {"scheduler": "zigzag"}, 422, "scheduler"),
    ("txt2img", {"sampler_name": "DDIM", "scheduler": "karras"}, 422, "scheduler"),
    ("txt2img", {"override_settings": {"sd_model_checkpoint": "nope.safetensors"}}, 422, "sd_model_checkpoint"),
    ("img2img", {"init_images": ["%%% not base64 %%%"]}, 422, "init_images"),
    ("img2img", {"init_images": [base64.b64encode(b"just some text").decode()]}, 422, "init_images"),
    ("img2img", {"init_images": ["data:image/png;base64,"]}, 422, "init_images"),
    ("img2img", {"init_images": ["PLACEHOLDER"], "mask": "bad!"}, 422, "mask"),
    ("img2img", {"init_images": ["PLACEHOLDER"], "denoising_strength": 1.5}, 422, "denoising_strength"),
    ("img2img", {"init_images": ["PLACEHOLDER"], "denoising_strength": -0.1}, 422, "denoising_strength"),
    ("img2img", {"init_images": []}, 404, "Init image not found"),
    ("img2img", {}, 404, "Init image not found"),
]


@pytest.fixture(scope="module")
def valid_init():
    from PIL import Image

    return png_b64(Image.new("RGB", (64, 64), (10, 120, 30)))


@pytest.mark.parametrize("route,body,status,field", CASES, ids=[f"{c[0]}-{c[3]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_a_4xx_naming_the_field(tiny, valid_init, route, body, status, field):
    body = {k: ([valid_init if x == "PLACEHOLDER" else x for x in v] if k == "init_images" else v) for k, v in body.items()}
    response = tiny.post(f"/v1/{route}", json={"prompt": "p", **SMALL, **body})
    assert response.status_code == status, response.text
    assert field in error_text(response)
    # ... and the server keeps serving
    assert tiny.post("/v1/txt2img", json={"prompt": "still here", **SMALL}).status_code == 200


def test_body_over_the_limit_is_413_naming_the_body(tiny):
    huge = "A" * (300 * 1024)
    response = tiny.post("/v1/img2img", json={"prompt": "x", "init_images": [huge], **SMALL})
    assert response.status_code == 413
    assert response.json()["error"] == "PayloadTooLarge"
    assert "body" in response.json()["detail"] and str(256 * 1024) in response.json()["detail"]


def test_chunked_body_over_the_limit_is_413(tiny):
    def chunks():
        yield b'{"prompt": "'
        for _ in range(40):
            yield b"x" * 8192
        yield b'"}'

    response = tiny.post("/v1/txt2img", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert "body" in response.json()["detail"]


def test_malformed_json_is_422(tiny):
    response = tiny.post("/v1/txt2img", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_decompression_bomb_is_refused_without_a_5xx(tiny):
    from PIL import Image

    huge = png_b64(Image.new("1", (5000, 5000)))  # tiny file, 25 megapixels decoded
    response = tiny.post("/v1/img2img", json={"prompt": "x", "init_images": [huge], **SMALL})
    assert response.status_code == 422, response.text
    assert "init_images" in error_text(response)
