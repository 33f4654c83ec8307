"""Several checkpoints and LoRA adapters, over HTTP against a real uvicorn server.

The server runs in this process (ThreadedServer) so a wrapper around the batch runner
can record what the pipeline really received (the prompt the encoder sees, the batch key).
"""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

from inference.api.app import create_app
from inference.config import ServerSettings
from inference.engine.builtin import ensure_builtin
from inference.infotext import parse_infotext

from .conftest import decode_png, info_of
from .lora_fixture import make_tiny_lora
from .server import ThreadedServer

SMALL = {"width": 64, "height": 64, "steps": 3, "seed": 4}


class Recorder:
    def __init__(self):
        self.calls = []

    def wrap(self, runner):
        def recording(key, tasks, on_step):
            self.calls.append((key, [task.prompt for task in tasks]))
            return runner(key, tasks, on_step)

        return recording


@pytest.fixture(scope="module")
def lora_dir(cache_dir, tmp_path_factory):
    return make_tiny_lora(ensure_builtin("builtin:tiny", cache_dir), tmp_path_factory.mktemp("lora") / "ink-style")


@pytest.fixture(scope="module")
def served(cache_dir, lora_dir):
    recorder = Recorder()
    settings = ServerSettings(
        model=["builtin:tiny", "builtin:tiny-sdxl"],
        lora=[f"{lora_dir}:ink:0.8"],
        cache_dir=cache_dir,
        max_loaded_models=1,
        max_batch_size=4,
        batch_window_ms=100,
    )
    app = create_app(settings, wrap_runner=recorder.wrap)
    with ThreadedServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        yield client, recorder, app.state.runtime


def _pixels(response: httpx.Response, index: int = 0) -> bytes:
    assert response.status_code == 200, response.text
    return decode_png(response.json()["images"][index]).tobytes()


def _txt2img(client, prompt, **extra):
    return client.post("/sdapi/v1/txt2img", json={"prompt": prompt, **SMALL, **extra})


def test_an_adapter_changes_the_image_and_weight_zero_equals_none(served):
    client, recorder, _ = served
    base = _pixels(_txt2img(client, "a cat"))
    with_lora = _txt2img(client, "a cat <lora:ink:1>")
    assert _pixels(with_lora) != base
    assert _pixels(_txt2img(client, "a cat <lora:ink:0>")) == base
    assert _pixels(_txt2img(client, "a cat")) == base  # nothing stays active afterwards
    key, prompts = recorder.calls[-3]
    assert prompts == ["a cat"] and key.adapters == (("ink", 1.0, 1.0),)  # the encoder never sees the tag
    info = info_of(with_lora)
    assert info["extra_generation_params"] == {"LoRA": "ink:1"}
    parsed = parse_infotext(decode_png(with_lora.json()["images"][0]).text["parameters"])
    assert parsed["Prompt"] == "a cat <lora:ink:1>" and parsed["LoRA"] == "ink:1"


def test_a_tag_without_weight_uses_the_default_weight_of_the_flag(served):
    client, recorder, _ = served
    assert _txt2img(client, "<lora:ink> a dog").status_code == 200
    key, prompts = recorder.calls[-1]
    assert key.adapters == (("ink", 0.8, 0.8),) and prompts == ["a dog"]


def test_a1111_text_encoder_and_unet_weights_reach_the_batch_and_the_infotext(served):
    client, recorder, _ = served
    response = _txt2img(client, "a dog <lora:ink:0.5:1.5>")
    key, prompts = recorder.calls[-1]
    assert key.adapters == (("ink", 0.5, 1.5),) and prompts == ["a dog"]
    assert info_of(response)["extra_generation_params"]["LoRA"] == "ink:0.5:1.5"
    # The adapter has UNet layers only: its UNet weight changes the image, not its text one.
    assert _pixels(response) != _pixels(_txt2img(client, "a dog <lora:ink:0.5:1>"))
    assert _pixels(_txt2img(client, "a dog <lora:ink:0:1.5>")) == _pixels(response)
    bad = _txt2img(client, "a dog <lora:ink:lbw=OUTALL>")
    assert bad.status_code == 422 and "unknown parameter lbw" in bad.text


def test_hr_prompt_tags_choose_the_second_pass_adapters_as_in_a1111(served):
    client, recorder, _ = served
    hires = {"enable_hr": True, "hr_scale": 1.5, "hr_second_pass_steps": 2, "denoising_strength": 0.6}

    def run(prompt, **extra):
        response = _txt2img(client, prompt, **hires, **extra)
        return _pixels(response), recorder.calls[-1][0]

    styled, key = run("a cat <lora:ink:1>")
    assert key.adapters == (("ink", 1.0, 1.0),) and key.hires.adapters is None  # both passes
    first_only, key = run("a cat <lora:ink:1>", hr_prompt="a cat, detailed")
    assert key.hires.adapters == ()  # an hr_prompt without tags: the second pass has none
    second_only, key = run("a cat", hr_prompt="a cat, detailed <lora:ink:1>")
    assert key.adapters == () and key.hires.adapters == (("ink", 1.0, 1.0),)
    plain, _ = run("a cat", hr_prompt="a cat, detailed")
    assert len({styled, first_only, second_only, plain}) == 4


def test_requests_with_different_adapters_are_never_batched_together(served):
    client, recorder, _ = served
    alone = {p: _pixels(_txt2img(client, p)) for p in ("a fox <lora:ink:1>", "a fox")}
    recorder.calls.clear()
    prompts = ["a fox <lora:ink:1>", "a fox", "a fox <lora:ink:1>", "a fox"]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: _txt2img(client, p), prompts))
    for prompt, response in zip(prompts, results, strict=True):
        assert _pixels(response) == alone[prompt]
    for _key, batch_prompts in recorder.calls:
        assert len(set(batch_prompts)) == 1  # one adapter set per pipeline call
    assert any(len(p) > 1 for _, p in recorder.calls), "the concurrent requests were batched"


def test_unknown_adapter_is_a_422_naming_the_prompt_and_the_choices(served):
    client, _, _ = served
    response = _txt2img(client, "x <lora:watercolour:1>")
    assert response.status_code == 422
    message = response.json()["detail"][0]["msg"]
    assert "prompt" in message and "'watercolour'" in message and "ink" in message


def test_loras_route_lists_the_adapters(served, lora_dir):
    client, _, _ = served
    assert client.get("/sdapi/v1/loras").json() == [
        {"name": "ink", "alias": "ink", "path": str(lora_dir), "metadata": {"default_weight": 0.8}}
    ]


def test_switching_checkpoints_through_options_override_settings_and_openai(served):
    client, _, runtime = served
    titles = [m["title"] for m in client.get("/sdapi/v1/sd-models").json()]
    assert titles == ["builtin:tiny", "builtin:tiny-sdxl"]
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == titles
    tiny_image = _pixels(_txt2img(client, "a boat"))
    try:
        assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "builtin:tiny-sdxl"}).status_code == 200
        assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "builtin:tiny-sdxl"
        sdxl = _txt2img(client, "a boat")
        assert info_of(sdxl)["sd_model_name"] == "builtin:tiny-sdxl" and _pixels(sdxl) != tiny_image
        assert runtime.registry.loaded_names() == ["builtin:tiny-sdxl"]  # --max-loaded-models 1 evicted tiny
        # One request may name another checkpoint; the current one stays.
        override = _txt2img(client, "a boat", override_settings={"sd_model_checkpoint": "builtin:tiny"})
        assert info_of(override)["sd_model_name"] == "builtin:tiny" and _pixels(override) == tiny_image
        assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "builtin:tiny-sdxl"
        # The tiny SD 1.x adapter does not fit the SDXL checkpoint: refused, not applied wrongly.
        assert _txt2img(client, "a boat <lora:ink:1>").status_code == 422
        # OpenAI's `model` field picks from the same list.
        result = client.post("/v1/images/generations", json={"model": "builtin:tiny", "prompt": "a boat", "size": "64x64"})
        assert result.status_code == 200, result.text
        png = decode_png(result.json()["data"][0]["b64_json"])
        assert parse_infotext(png.text["parameters"])["Model"] == "builtin:tiny"
    finally:
        client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "builtin:tiny"})


def test_unknown_checkpoints_are_4xx_naming_them(served):
    client, _, _ = served
    options = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "sd_xl_base_1.0.safetensors"})
    assert options.status_code == 422 and "sd_xl_base_1.0.safetensors" in str(options.json())
    override = _txt2img(client, "x", override_settings={"sd_model_checkpoint": "nope"})
    assert override.status_code == 422 and "sd_model_checkpoint" in str(override.json())
    openai = client.post("/v1/images/generations", json={"model": "nope/model", "prompt": "x", "size": "64x64"})
    assert openai.status_code == 400 and openai.json()["error"]["param"] == "model"
    assert client.get("/v1/models/nope").status_code == 404


def test_overrides_stay_set_when_restore_afterwards_is_false(served):
    # A1111: with override_settings_restore_afterwards false, the overrides are not undone
    # after the request: the checkpoint becomes the current one, options keep the values.
    client, _, _ = served
    try:
        overrides = {"sd_model_checkpoint": "builtin:tiny-sdxl", "CLIP_stop_at_last_layers": 2}
        kept = _txt2img(client, "a boat", override_settings=overrides, override_settings_restore_afterwards=False)
        assert kept.status_code == 200, kept.text
        assert info_of(kept)["sd_model_name"] == "builtin:tiny-sdxl"
        options = client.get("/sdapi/v1/options").json()
        assert options["sd_model_checkpoint"] == "builtin:tiny-sdxl" and options["CLIP_stop_at_last_layers"] == 2
        assert info_of(_txt2img(client, "a boat"))["sd_model_name"] == "builtin:tiny-sdxl"
        # A request refused for bad input keeps nothing, not even its checkpoint.
        refused = _txt2img(client, "a boat", width=100, override_settings={"sd_model_checkpoint": "builtin:tiny"},
                           override_settings_restore_afterwards=False)
        assert refused.status_code == 422, refused.text
        assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "builtin:tiny-sdxl"
        # The default (restore afterwards) still leaves the current checkpoint alone.
        _txt2img(client, "a boat", override_settings={"sd_model_checkpoint": "builtin:tiny"})
        assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "builtin:tiny-sdxl"
    finally:
        client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "builtin:tiny", "CLIP_stop_at_last_layers": 1})
