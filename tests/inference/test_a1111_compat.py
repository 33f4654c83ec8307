"""Requests that AUTOMATIC1111 or OpenAI accept, and that an existing client sends, must
work here too; and input they reject must be a 4xx naming the field, never a 5xx."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from .conftest import error_text, info_of, png_b64

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


@pytest.mark.parametrize("route", ["txt2img", "img2img"])
@pytest.mark.parametrize("steps", [1, 2, 3])
def test_plms_works_with_few_steps(tiny, init_image, route, steps):
    body = {"prompt": "p", **SMALL, "steps": steps, "sampler_name": "PLMS", "init_images": [init_image]}
    response = tiny.post(f"/sdapi/v1/{route}", json=body)
    assert response.status_code == 200, response.text
    assert info_of(response)["sampler_name"] == "PNDM"
