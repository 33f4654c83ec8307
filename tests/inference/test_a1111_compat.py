"""Requests that AUTOMATIC1111 or OpenAI accept, and that an existing client sends, must
work here too; and input they reject must be a 4xx naming the field, never a 5xx."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from .conftest import decode_png, error_text, info_of, png_b64

SMALL = {"width": 64, "height": 64, "steps": 2}


@pytest.fixture(scope="module")
def init_image() -> str:
    return png_b64(Image.new("RGB", (64, 64), (10, 120, 30)))


@pytest.mark.parametrize("steps,strength", [(10, 0.05), (2, 0.3), (1, 0.5), (20, 0.01)])
def test_img2img_with_fewer_than_one_denoising_step_still_runs_one(tiny, init_image, steps, strength):
    # A1111 runs one step at the lowest noise level; diffusers alone would fail (a 500).
    body = {"prompt": "p", **SMALL, "steps": steps, "denoising_strength": strength, "init_images": [init_image]}
    response = tiny.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == 1
    assert info_of(response)["steps"] == steps  # reported as requested, as A1111 does


@pytest.mark.parametrize("steps", [1, 3, 20])
def test_img2img_at_strength_0_runs_the_last_step_of_the_schedule(tiny, init_image, steps):
    # StableStudio sends 0 at image weight 1; A1111 then runs only the lowest-noise step,
    # which is what strength 1/steps selects: the same pixels, with 0 on record.
    body = {"prompt": "p", **SMALL, "steps": steps, "seed": 5, "init_images": [init_image]}
    at_zero = tiny.post("/sdapi/v1/img2img", json={**body, "denoising_strength": 0})
    assert at_zero.status_code == 200, at_zero.text
    assert info_of(at_zero)["denoising_strength"] == 0
    last_step = tiny.post("/sdapi/v1/img2img", json={**body, "denoising_strength": 1 / steps})
    assert decode_png(at_zero.json()["images"][0]).tobytes() == decode_png(last_step.json()["images"][0]).tobytes()


@pytest.mark.parametrize("route", ["txt2img", "img2img"])
@pytest.mark.parametrize("steps", [1, 2, 3])
def test_plms_works_with_few_steps(tiny, init_image, route, steps):
    body = {"prompt": "p", **SMALL, "steps": steps, "sampler_name": "PLMS", "init_images": [init_image]}
    response = tiny.post(f"/sdapi/v1/{route}", json=body)
    assert response.status_code == 200, response.text
    assert info_of(response)["sampler_name"] == "PNDM"


@pytest.mark.parametrize("field", ["cfg_scale", "subseed_strength", "eta", "denoising_strength"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_a_422_naming_the_field(tiny, field, value):
    # Python's JSON parser (and so FastAPI's) accepts NaN/Infinity; echoing them back failed.
    content = '{"prompt": "p", "width": 64, "height": 64, "steps": 2, "%s": %s}' % (field, value)
    response = tiny.post("/sdapi/v1/txt2img", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert field in error_text(response)


def test_null_means_the_default_as_in_a1111(tiny):
    # A1111 declares every generation field Optional; clients that serialise unset fields
    # as null (generated clients, the /docs page) must not get a 422.
    body = {
        "prompt": "p", **SMALL, "styles": None, "seed": None, "subseed": None, "negative_prompt": None,
        "override_settings": None, "script_args": None, "alwayson_scripts": None, "batch_size": None,
        "n_iter": None, "cfg_scale": None, "sampler_name": None, "send_images": None, "restore_faces": None,
    }
    response = tiny.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    info = info_of(response)
    assert info["cfg_scale"] == 7.0 and info["styles"] == [] and 0 <= info["seed"] < 2**32
    assert len(response.json()["images"]) == 1
    assert tiny.post("/sdapi/v1/txt2img", json={"prompt": "p", **SMALL, "cfgScale": None}).status_code == 200


def test_img2img_with_null_init_images_is_a1111s_404(tiny):
    response = tiny.post("/sdapi/v1/img2img", json={"prompt": "p", **SMALL, "init_images": None})
    assert response.status_code == 404 and "Init image not found" in error_text(response)


# -- OpenAI images -------------------------------------------------------------------


def test_openai_errors_name_the_field_the_client_sent(tiny):
    too_many = tiny.post("/v1/images/generations", json={"prompt": "p", "size": "64x64", "n": 5})
    assert too_many.status_code == 400
    error = too_many.json()["error"]
    assert error["param"] == "n" and error["message"].startswith("n: ") and "batch_size" not in error["message"]

    odd = tiny.post("/v1/images/generations", json={"prompt": "p", "size": "65x64"}).json()["error"]
    assert odd["param"] == "size" and odd["message"].startswith("size: ")


def test_openai_malformed_json_is_a_400_without_a_bogus_param(tiny):
    response = tiny.post("/v1/images/generations", content="{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] is None and "JSON" in error["message"]
    not_an_object = tiny.post("/v1/images/generations", json=[1, 2]).json()["error"]
    assert not_an_object["param"] is None


def test_openai_nullable_fields_accept_null(tiny):
    body = {"prompt": "p", "size": "64x64", "n": None, "quality": None, "style": None, "user": None,
            "response_format": None, "steps": 2}
    response = tiny.post("/v1/images/generations", json=body)
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 1 and response.json()["data"][0]["b64_json"]


def test_openai_non_finite_number_is_a_400(tiny):
    content = json.dumps({"prompt": "p", "size": "64x64", "cfg_scale": float("nan")})
    response = tiny.post("/v1/images/generations", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "cfg_scale"


def test_openai_unknown_model_is_model_not_found(tiny):
    response = tiny.get("/v1/models/no-such-model")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found" and response.json()["error"]["param"] == "model"


def test_openai_stream_is_refused_rather_than_answered_as_json(tiny):
    response = tiny.post("/v1/images/generations", json={"prompt": "p", "size": "64x64", "stream": True})
    assert response.status_code == 400 and response.json()["error"]["param"] == "stream"
    plain = tiny.post("/v1/images/generations", json={"prompt": "p", "size": "64x64", "stream": False, "steps": 2})
    assert plain.status_code == 200, plain.text


@pytest.mark.parametrize("size", ["0x0", "4x64", "64x0"])
def test_openai_tiny_size_is_a_400_naming_size(tiny, size):
    response = tiny.post("/v1/images/generations", json={"prompt": "p", "size": size})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "size"
