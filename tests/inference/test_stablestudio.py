"""A replay of what StableStudio's webui plugin (packages/stablestudio-plugin-webui)
sends from the browser, in its order, with its payloads, checking exactly the fields it
reads from each response. The browser's CORS preflights are replayed too: the plugin
runs on another origin and always sends `Content-Type: application/json`."""

from __future__ import annotations

import base64
import io
import time

import httpx
import pytest
from PIL import Image

ORIGIN = "http://localhost:3000"  # allowed by the slow_server fixture's --cors-origins


class Browser:
    """fetch() as a browser does it: preflight for non-simple requests, CORS checks."""

    def __init__(self, client: httpx.Client):
        self.client = client

    def fetch(self, method: str, path: str, json=None) -> httpx.Response:
        preflight = self.client.options(
            path,
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": "content-type"},
        )
        assert preflight.status_code == 200, f"preflight {path}: {preflight.status_code}"
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert method in preflight.headers["access-control-allow-methods"]
        assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
        response = self.client.request(method, path, json=json, headers={"Origin": ORIGIN, "Content-Type": "application/json"})
        assert response.headers.get("access-control-allow-origin") == ORIGIN, f"{path}: response not readable cross-origin"
        return response


def image_info_as_stablestudio_parses_it(info: str) -> dict:
    """The plugin's getImageInfo(): line 0 prompt, 3 lines -> negative, then 'k: v, ...'."""
    lines = info.split("\n")
    data = {"prompt": lines[0]}
    detail_index = 1
    if len(lines) == 3:
        data["negative"] = lines[1].split(":")[1].strip()
        detail_index = 2
    for detail in lines[detail_index].split(","):
        parts = detail.strip().split(":")
        data[parts[0]] = parts[1].strip()  # an IndexError here is a TypeError crash in the plugin
    return data


def jpeg_blob(b64: str) -> bytes:
    # base64ToBlob(...): the plugin only base64-decodes; the bytes must be an image.
    raw = base64.b64decode(b64)
    Image.open(io.BytesIO(raw)).verify()
    return raw


def png_b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def browser(slow_server):
    with httpx.Client(base_url=slow_server.url, timeout=120) as client:
        yield Browser(client)


def test_stablestudio_session(browser):
    # getStatus(): GET options must be ok; the history probe must be ok within a second.
    assert browser.fetch("GET", "/sdapi/v1/options").status_code == 200
    started = time.monotonic()
    probe = browser.fetch("POST", "/StableStudio/get-generated-images", {"limit": 1})
    assert probe.status_code == 200 and isinstance(probe.json(), list)
    assert time.monotonic() - started < 1.0

    # getStableDiffusionModels() / getStableDiffusionSamplers(): id = title, name = model_name / name.
    models = [{"id": m["title"], "name": m["model_name"]} for m in browser.fetch("GET", "/sdapi/v1/sd-models").json()]
    assert models == [{"id": "builtin:tiny", "name": "builtin:tiny"}]
    samplers = [s["name"] for s in browser.fetch("GET", "/sdapi/v1/samplers").json()]
    assert "Euler a" in samplers

    # createStableDiffusionImages(): fetchOptions, switch model if it differs, then generate.
    options = browser.fetch("GET", "/sdapi/v1/options").json()
    assert options["sd_model_checkpoint"] == models[0]["id"]  # so the plugin would not switch...
    switched = browser.fetch("POST", "/sdapi/v1/options", {"sd_model_checkpoint": models[0]["id"]})
    assert switched.status_code == 200 and switched.json() is None  # ...and switching to it is harmless

    # constructPayload() for txt2img: seed 0 -> -1, cfgScale camelCase, empty sampler names.
    txt2img = {
        "seed": -1, "cfgScale": 9, "width": 64, "height": 64, "sampler_name": "", "sampler_index": "",
        "prompt": "a castle in the clouds", "negative_prompt": "low quality", "steps": 3, "batch_size": 4,
        "save_images": True,
    }
    response = browser.fetch("POST", "/sdapi/v1/txt2img", txt2img)
    assert response.status_code == 200, response.text
    images = response.json()["images"]
    start_index = 1 if len(images) > txt2img["batch_size"] else 0  # the plugin skips a grid image
    assert start_index == 0 and len(images) == 4
    for image in images:
        jpeg_blob(image)

    # img2img with a StableStudio mask: weight 0.3 -> denoising 0.7, mask mode inverted.
    init = Image.new("RGB", (64, 64), (90, 90, 200))
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((255, 255, 255, 255), (0, 0, 64, 24))
    img2img = {
        "seed": 12, "cfgScale": 7, "width": 64, "height": 64, "sampler_name": "Euler a", "sampler_index": "Euler a",
        "prompt": "a castle, repainted", "negative_prompt": "", "steps": 3, "batch_size": 4, "save_images": True,
        "denoising_strength": 1 - 0.3, "init_images": [png_b64(init)], "mask": png_b64(mask),
        "inpainting_mask_invert": 1, "inpainting_fill": 1, "inpaint_full_res": False,
    }
    response = browser.fetch("POST", "/sdapi/v1/img2img", img2img)
    assert response.status_code == 200, response.text
    edited = [Image.open(io.BytesIO(jpeg_blob(b64))).convert("RGB") for b64 in response.json()["images"]]
    assert len(edited) == 4
    # inverted: the white band (top) is kept, the black part is repainted
    assert edited[0].crop((0, 0, 64, 12)).getcolors() == [(64 * 12, (90, 90, 200))]
    assert edited[0].crop((0, 40, 64, 64)).getcolors(64 * 24) != [(64 * 24, (90, 90, 200))]

    # getStableDiffusionExistingImages(): history, then png-info per image.
    history = browser.fetch("POST", "/StableStudio/get-generated-images", {"limit": 20}).json()
    assert len(history) >= 8
    newest = history[0]
    info = browser.fetch("POST", "/sdapi/v1/png-info", {"image": newest["content"]}).json()["info"]
    parsed = image_info_as_stablestudio_parses_it(info)
    assert parsed["prompt"] == "a castle, repainted"
    assert int(parsed["Steps"]) == 3 and int(parsed["Seed"]) in range(12, 16)
    assert float(parsed["CFG scale"]) == 7
    assert (newest["width"], newest["height"]) == (64, 64)
    assert abs(newest["create_date"] - time.time()) < 120  # seconds since the epoch (the plugin multiplies by 1000)
    older = image_info_as_stablestudio_parses_it(
        browser.fetch("POST", "/sdapi/v1/png-info", {"image": history[4]["content"]}).json()["info"]
    )
    assert older["prompt"] == "a castle in the clouds" and older["negative"] == "low quality"


def test_an_origin_not_configured_gets_no_cors_grant(slow_server):
    response = httpx.options(
        f"{slow_server.url}/sdapi/v1/txt2img",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
