"""AUTOMATIC1111's /sdapi/v1 over real HTTP: response shapes, options, png-info, the
catalogue routes, progress and interrupt, and the StableStudio history route."""

from __future__ import annotations

import re
import threading
import time

import httpx
import numpy as np
from PIL import Image

from inference.infotext import parse_infotext

from .conftest import decode_png, error_text, info_of, png_b64

SMALL = {"width": 64, "height": 64, "steps": 2}
INFO_KEYS = {
    "prompt", "all_prompts", "negative_prompt", "seed", "all_seeds", "subseed", "all_subseeds", "width", "height",
    "sampler_name", "cfg_scale", "steps", "batch_size", "sd_model_name", "index_of_first_image", "infotexts",
    "job_timestamp",
}


def test_txt2img_answers_a1111s_shape_with_consecutive_seeds_and_no_grid(tiny):
    body = {
        "prompt": "tea garden", "negative_prompt": "fog", "seed": 5, "subseed": 9, "batch_size": 2, "n_iter": 2,
        "cfgScale": 4.5, "sampler_index": "DDIM", "scheduler": "automatic", "enable_hr": False,
        "save_images": False, "alwayson_scripts": {}, "script_args": [], "some_future_field": {"x": 1}, **SMALL,
    }
    response = tiny.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert set(payload) == {"images", "parameters", "info"}
    info = info_of(response)
    assert INFO_KEYS <= set(info)
    assert len(payload["images"]) == 4  # n_iter x batch_size, no grid image first
    assert info["all_seeds"] == [5, 6, 7, 8] and info["all_subseeds"] == [9, 10, 11, 12]
    assert info["index_of_first_image"] == 0
    assert info["cfg_scale"] == 4.5 and info["sampler_name"] == "DDIM"
    assert info["all_prompts"] == ["tea garden"] * 4
    assert len(info["infotexts"]) == 4 and "Seed: 7" in info["infotexts"][2]
    assert "interrupted" not in info
    assert [decode_png(image).size for image in payload["images"]] == [(64, 64)] * 4


def test_img2img_mask_with_invert_repaints_only_the_black_part(tiny):
    init = Image.new("RGB", (64, 64), (200, 30, 30))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))  # white left half: with invert=1 it is the part that is kept
    body = {
        "prompt": "blue sky", "init_images": [png_b64(init)], "mask": png_b64(mask), "inpainting_mask_invert": 1,
        "inpainting_fill": 1, "inpaint_full_res": False, "denoising_strength": 0.9, "seed": 3, "mask_blur": 2, **SMALL,
    }
    response = tiny.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 200, response.text
    result = np.asarray(decode_png(response.json()["images"][0]).convert("RGB")).astype(int)
    original = np.asarray(init).astype(int)
    assert np.array_equal(result[:, :24], original[:, :24]), "the kept half is the init image, pixel for pixel"
    assert np.abs(result[:, 40:] - original[:, 40:]).mean() > 10, "the inverted mask's half was repainted"
    assert info_of(response)["denoising_strength"] == 0.9


def test_img2img_without_an_init_image_is_404(tiny):
    response = tiny.post("/sdapi/v1/img2img", json={"prompt": "x", **SMALL})
    assert response.status_code == 404
    assert response.json() == {"error": "HTTPException", "detail": "Init image not found", "body": None, "errors": None}


def test_options_reflect_the_model_and_refuse_an_unknown_checkpoint(tiny):
    options = tiny.get("/sdapi/v1/options").json()
    assert options["sd_model_checkpoint"] == "builtin:tiny"
    models = tiny.get("/sdapi/v1/sd-models").json()
    assert models == [
        {"title": "builtin:tiny", "model_name": "builtin:tiny", "hash": models[0]["hash"],
         "sha256": options["sd_checkpoint_hash"], "filename": models[0]["filename"], "config": None}
    ]
    assert models[0]["sha256"].startswith(models[0]["hash"]) and len(models[0]["hash"]) == 10

    accepted = tiny.post(
        "/sdapi/v1/options", json={"sd_model_checkpoint": "builtin:tiny", "samples_format": "png", "jpeg_quality": 80}
    )
    assert accepted.status_code == 200 and accepted.json() is None
    assert tiny.get("/sdapi/v1/options").json()["jpeg_quality"] == 80

    refused = tiny.post("/sdapi/v1/options", json={"sd_model_checkpoint": "v1-5-pruned.safetensors"})
    assert refused.status_code == 422
    assert "sd_model_checkpoint" in error_text(refused) and "builtin:tiny" in error_text(refused)
    assert tiny.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "builtin:tiny"


def test_samplers_and_schedulers_in_a1111s_shape_and_each_one_generates(tiny):
    samplers = tiny.get("/sdapi/v1/samplers").json()
    names = [s["name"] for s in samplers]
    for expected in ("Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE", "DDIM", "PNDM", "LMS", "Heun", "UniPC"):
        assert expected in names
    assert all(set(s) == {"name", "aliases", "options"} for s in samplers)
    schedulers = tiny.get("/sdapi/v1/schedulers").json()
    assert {s["name"] for s in schedulers} >= {"automatic", "karras", "exponential"}
    assert all(set(s) == {"name", "label", "aliases", "default_rho", "need_inner_model"} for s in schedulers)
    for name in ("DPM++ 2M Karras", "UniPC", "Heun"):
        response = tiny.post("/sdapi/v1/txt2img", json={"prompt": "p", "sampler_name": name, "seed": 1, **SMALL})
        assert response.status_code == 200, response.text


def test_png_info_round_trips_the_parameters_chunk(tiny):
    generated = tiny.post(
        "/sdapi/v1/txt2img",
        json={"prompt": "harbour, at night", "negative_prompt": "people", "seed": 42, "cfg_scale": 6, **SMALL},
    )
    image = generated.json()["images"][0]
    response = tiny.post("/sdapi/v1/png-info", json={"image": "data:image/png;base64," + image})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["info"] == info_of(generated)["infotexts"][0]
    assert body["parameters"]["Prompt"] == "harbour, at night"
    assert body["parameters"]["Negative prompt"] == "people"
    assert body["parameters"]["Seed"] == 42 and body["parameters"]["Steps"] == 2
    assert body["parameters"]["Size-1"] == 64 and body["items"] == {}

    plain = tiny.post("/sdapi/v1/png-info", json={"image": png_b64(Image.new("RGB", (8, 8)))}).json()
    assert plain == {"info": "", "items": {}, "parameters": {}}
    bad = tiny.post("/sdapi/v1/png-info", json={"image": "not an image"})
    assert bad.status_code == 422 and "image" in error_text(bad)


def test_catalogue_routes(tiny):
    assert tiny.get("/sdapi/v1/scripts").json() == {"txt2img": [], "img2img": []}
    assert tiny.get("/sdapi/v1/loras").json() == []
    assert tiny.post("/sdapi/v1/refresh-checkpoints").json() is None
    assert [u["name"] for u in tiny.get("/sdapi/v1/upscalers").json()] == ["None", "Lanczos", "Nearest", "Bicubic", "Bilinear"]
    memory = tiny.get("/sdapi/v1/memory").json()
    assert memory["ram"]["total"] > memory["ram"]["used"] > 0
    assert "error" in memory["cuda"] or memory["cuda"]["system"]["total"] > 0
    flags = tiny.get("/sdapi/v1/cmd-flags").json()
    assert flags["api"] is True and flags["ckpt"] == "builtin:tiny"
    assert flags["api_auth"] is None and flags["auth_file"] is False


def test_stablestudio_history_lists_saved_images_newest_first(slow_server):
    with httpx.Client(base_url=slow_server.url, timeout=60) as client:
        for seed in (100, 200):
            response = client.post(
                "/sdapi/v1/txt2img", json={"prompt": f"saved {seed}", "seed": seed, "save_images": True, **SMALL}
            )
            assert response.status_code == 200, response.text
        client.post("/sdapi/v1/txt2img", json={"prompt": "not saved", "seed": 300, **SMALL})
        history = client.post("/StableStudio/get-generated-images", json={"limit": 2}).json()
        names = [entry["image_name"] for entry in history]
        # A1111's running number and seed, then this server process's token.
        assert [re.fullmatch(r"(\d{5})-(\d+)-[0-9a-f]{6}\.png", name).group(2) for name in names] == ["200", "100"], names
        entry = history[0]
        assert set(entry) == {"image_name", "create_date", "content", "width", "height"}
        assert (entry["width"], entry["height"]) == (64, 64) and abs(entry["create_date"] - time.time()) < 60
        assert parse_infotext(decode_png(entry["content"]).text["parameters"])["Prompt"] == "saved 200"
        bad = client.post("/StableStudio/get-generated-images", json={"limit": -1})
        assert bad.status_code == 422 and "limit" in error_text(bad)


def _start(client: httpx.Client, body: dict) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def call():
        outcome["response"] = client.post("/sdapi/v1/txt2img", json=body)

    thread = threading.Thread(target=call)
    thread.start()
    return thread, outcome


def _wait_for_step(client: httpx.Client, step: int) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        progress = client.get("/sdapi/v1/progress").json()
        if progress["state"]["sampling_step"] >= step:
            return progress
        time.sleep(0.05)
    raise AssertionError("the generation never reached step %d" % step)


def test_progress_reports_steps_and_interrupt_returns_the_partial_images(slow_server):
    with httpx.Client(base_url=slow_server.url, timeout=60) as client:
        idle = client.get("/sdapi/v1/progress").json()
        assert idle["progress"] == 0 and idle["state"]["job_count"] == 0 and idle["current_image"] is None

        thread, outcome = _start(
            client, {"prompt": "long one", "seed": 8, "batch_size": 2, "width": 64, "height": 64, "steps": 40}
        )
        progress = _wait_for_step(client, 3)
        assert 0 < progress["progress"] < 0.5
        assert progress["state"]["sampling_steps"] == 40 and progress["eta_relative"] > 0
        assert progress["textinfo"].startswith("Step ")

        assert client.post("/sdapi/v1/interrupt").json() == {}
        thread.join(30)
        response = outcome["response"]
        assert response.status_code == 200, response.text
        info = info_of(response)
        assert info["interrupted"] is True and info["all_seeds"] == [8, 9]
        assert len(response.json()["images"]) == 2  # the batch ran together: both partial images come back
        after = client.get("/sdapi/v1/progress").json()
        assert after["state"]["interrupted"] is True and after["progress"] == 0

        # The next job clears the flag, as A1111's state.begin() does.
        assert client.post("/sdapi/v1/txt2img", json={"prompt": "short", **SMALL}).status_code == 200
        assert client.get("/sdapi/v1/progress").json()["state"]["interrupted"] is False


def test_skip_stops_the_running_batch_and_the_request_goes_on(slow_server):
    # 8 images run as two calls of 4 (max batch 4); skip during the first call stops it
    # early, as A1111's skip ends the current iteration, and the second call still runs.
    with httpx.Client(base_url=slow_server.url, timeout=60) as client:
        body = {"prompt": "skip me", "seed": 20, "batch_size": 4, "n_iter": 2, "width": 64, "height": 64, "steps": 10}
        thread, outcome = _start(client, body)
        _wait_for_step(client, 2)
        assert client.post("/sdapi/v1/skip").json() is None
        thread.join(60)
        response = outcome["response"]
        assert response.status_code == 200, response.text
        info = info_of(response)
        assert not info.get("interrupted") and info["all_seeds"] == list(range(20, 28))
        assert len(response.json()["images"]) == 8


def test_interrupt_when_idle_does_nothing(slow_server):
    with httpx.Client(base_url=slow_server.url, timeout=60) as client:
        assert client.post("/sdapi/v1/interrupt").json() == {}
        assert client.post("/sdapi/v1/skip").json() is None
        assert client.get("/sdapi/v1/progress").json()["state"]["interrupted"] is False
        response = client.post("/sdapi/v1/txt2img", json={"prompt": "after", **SMALL})
        assert "interrupted" not in info_of(response)
