"""What the A1111 power user reaches for, through real clients (`webuiapi`, and the exact
request StableStudio sends): variation seeds, hires fix, Extras upscaling."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import webuiapi
from PIL import Image

from inference.infotext import parse_infotext

from .conftest import decode_png, png_b64
from .server import ServerProcess

# Euler is deterministic per step: with it, a strength-1 variation is the subseed's image.
SMALL = {"width": 64, "height": 64, "steps": 3, "sampler_name": "Euler", "prompt": "a kite"}


@pytest.fixture(scope="module")
def server(cache_dir, tmp_path_factory):
    with ServerProcess(
        "--model", "builtin:tiny", "--upscaler", "builtin:tiny-upscaler", "--max-width", "512", "--max-height", "512",
        cache_dir=cache_dir, log_path=tmp_path_factory.mktemp("logs") / "power.log",
    ) as process:
        yield process


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=180) as client:
        yield client


@pytest.fixture(scope="module")
def api(server):
    host, port = server.url.removeprefix("http://").split(":")
    return webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler", steps=3)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def txt2img(http: httpx.Client, **fields) -> dict:
    response = http.post("/sdapi/v1/txt2img", json={**SMALL, **fields})
    assert response.status_code == 200, response.text
    return response.json()


# -- variation seeds -------------------------------------------------------------------


def test_subseed_strength_0_is_the_seed_and_1_is_the_subseed(api):
    common = dict(prompt="a kite", width=64, height=64, steps=3, sampler_name="Euler")
    of_seed = api.txt2img(seed=5, **common).image
    of_subseed = api.txt2img(seed=9, **common).image
    at_0 = api.txt2img(seed=5, subseed=9, subseed_strength=0.0, **common).image
    at_1 = api.txt2img(seed=5, subseed=9, subseed_strength=1.0, **common).image
    between = api.txt2img(seed=5, subseed=9, subseed_strength=0.5, **common)
    assert np.array_equal(pixels(at_0), pixels(of_seed))
    assert np.array_equal(pixels(at_1), pixels(of_subseed)), "strength 1: bit-identical to seed=subseed"
    assert not np.array_equal(pixels(between.image), pixels(of_seed))
    assert not np.array_equal(pixels(between.image), pixels(of_subseed))
    fields = parse_infotext(between.info["infotexts"][0])
    assert fields["Variation seed"] == 9 and fields["Variation seed strength"] == 0.5


def test_variations_keep_the_seed_and_step_the_subseed_as_a1111(http):
    body = txt2img(http, seed=5, subseed=9, subseed_strength=0.3, batch_size=2)
    info = json.loads(body["info"])
    assert info["all_seeds"] == [5, 5] and info["all_subseeds"] == [9, 10]
    # Image 1 is the variation with subseed 10, whatever it is batched with.
    alone = txt2img(http, seed=5, subseed=10, subseed_strength=0.3)
    assert np.array_equal(pixels(decode_png(body["images"][1])), pixels(decode_png(alone["images"][0])))


def test_seed_resize_from_keeps_the_seeds_noise_in_the_centre():
    import torch

    from inference.engine.generate import ImageTask
    from inference.engine.variation import initial_noise

    small = initial_noise(ImageTask("", "", 3), torch.Generator().manual_seed(3), (4, 8, 8), torch.float32)
    task = ImageTask("", "", 3, seed_resize_from=(64, 64))
    large = initial_noise(task, torch.Generator().manual_seed(3), (4, 16, 16), torch.float32)
    assert large.shape == (1, 4, 16, 16)
    assert torch.equal(large[:, :, 4:12, 4:12], small)


# -- hires fix -------------------------------------------------------------------------


def test_hires_fix_has_the_hires_size_and_is_not_a_plain_upscale(api):
    common = dict(prompt="a kite", seed=21, width=64, height=64, steps=3, sampler_name="Euler")
    first_pass = api.txt2img(**common).image
    hires = api.txt2img(
        enable_hr=True, hr_scale=2, hr_upscaler="Latent", denoising_strength=0.6, hr_second_pass_steps=2, **common
    )
    assert hires.image.size == (128, 128)
    plain = first_pass.resize((128, 128), Image.LANCZOS)
    assert np.abs(pixels(hires.image) - pixels(plain)).mean() > 1
    fields = parse_infotext(hires.info["infotexts"][0])
    assert fields["Hires upscale"] == 2 and fields["Hires steps"] == 2
    assert fields["Hires upscaler"] == "Latent" and fields["Denoising strength"] == 0.6
    assert fields["Size"] == "64x64", "A1111 writes the first pass's size"


def test_hires_fix_with_an_image_upscaler_and_a_resize(http):
    body = txt2img(
        http, seed=4, enable_hr=True, hr_upscaler="tiny-upscaler", hr_resize_x=96, hr_resize_y=0,
        denoising_strength=0.5, hr_sampler_name="DDIM", hr_prompt="a red kite",
    )
    image = decode_png(body["images"][0])
    assert image.size == (96, 96)
    fields = parse_infotext(image.text["parameters"])
    assert fields["Hires resize"] == "96x0" and fields["Hires upscaler"] == "tiny-upscaler"
    assert fields["Hires sampler"] == "DDIM" and fields["Hires prompt"] == "a red kite"


def test_hires_images_are_the_same_alone_and_batched(http):
    hires = dict(enable_hr=True, hr_scale=1.5, denoising_strength=0.5, hr_second_pass_steps=2)
    pair = txt2img(http, seed=40, batch_size=2, **hires)
    second_alone = txt2img(http, seed=41, **hires)
    assert decode_png(pair["images"][1]).size == (96, 96)
    assert np.array_equal(pixels(decode_png(pair["images"][1])), pixels(decode_png(second_alone["images"][0])))


def test_hires_errors_name_the_field(http):
    bad = http.post("/sdapi/v1/txt2img", json={**SMALL, "enable_hr": True, "hr_upscaler": "SwinIR 9x"})
    assert bad.status_code == 422 and "hr_upscaler" in bad.text and "Latent (nearest)" in bad.text
    big = http.post("/sdapi/v1/txt2img", json={**SMALL, "enable_hr": True, "hr_scale": 16})
    assert big.status_code == 422 and "hr_scale" in big.text


# -- extras ----------------------------------------------------------------------------


def _picture(width: int = 40, height: int = 24) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def test_upscalers_list_what_works(http):
    listed = http.get("/sdapi/v1/upscalers").json()
    names = [u["name"] for u in listed]
    assert names[:3] == ["None", "Lanczos", "Nearest"] and "tiny-upscaler" in names
    assert [m["name"] for m in http.get("/sdapi/v1/latent-upscale-modes").json()][0] == "Latent"


def test_extra_single_image_with_webuiapi_and_the_learned_upscaler(api):
    result = api.extra_single_image(image=_picture(), upscaler_1="tiny-upscaler", upscaling_resize=2)
    assert result.image.size == (80, 48)
    assert "Postprocess upscale by: 2, Postprocess upscaler: tiny-upscaler" in result.info  # html_info
    lanczos = _picture().resize((80, 48), Image.LANCZOS)
    assert np.abs(pixels(result.image) - pixels(lanczos)).mean() > 1, "the network ran, not a resize"


def test_stablestudio_download_2x_request(http):
    """StableStudio's webui plugin: upscaler from its setting ("None"), target w/h, no resize_mode."""
    picture = _picture(64, 48)
    body = {
        "seed": -1, "cfgScale": 7, "upscaling_resize_w": 128, "upscaling_resize_h": 96, "upscaler_1": "None",
        "image": "data:image/png;base64," + png_b64(picture),
    }
    response = http.post("/sdapi/v1/extra-single-image", json=body)
    assert response.status_code == 200, response.text
    image = decode_png(response.json()["image"])
    assert image.size == (128, 96)
    assert np.array_equal(pixels(image), pixels(picture.resize((128, 96), Image.LANCZOS)))
    assert "Postprocess upscale by: 2" in response.json()["html_info"]


def test_extra_batch_images_to_a_size_with_crop_and_a_blend(http):
    items = [{"data": png_b64(_picture(40, 24)), "name": "a.png"}, {"data": png_b64(_picture(24, 40)), "name": "b.png"}]
    response = http.post(
        "/sdapi/v1/extra-batch-images",
        json={"imageList": items, "resize_mode": 1, "upscaling_resize_w": 64, "upscaling_resize_h": 64,
              "upscaling_crop": True, "upscaler_1": "Nearest", "upscaler_2": "Lanczos",
              "extras_upscaler_2_visibility": 0.5},
    )
    assert response.status_code == 200, response.text
    images = [decode_png(data) for data in response.json()["images"]]
    assert [image.size for image in images] == [(64, 64), (64, 64)]


def test_extras_errors_name_the_field(http):
    unknown = http.post("/sdapi/v1/extra-single-image", json={"image": png_b64(_picture()), "upscaler_1": "LDSR"})
    assert unknown.status_code == 422 and "upscaler_1" in unknown.text and "tiny-upscaler" in unknown.text
    missing = http.post("/sdapi/v1/extra-single-image", json={"upscaler_1": "None"})
    assert missing.status_code == 422 and "image" in missing.text


# -- inpainting ------------------------------------------------------------------------


def _inpaint(http, picture: Image.Image, mask: Image.Image, **fields) -> Image.Image:
    body = {
        **SMALL, "seed": 8, "init_images": [png_b64(picture)], "mask": png_b64(mask), "denoising_strength": 0.9,
        "mask_blur": 0, **fields,
    }
    response = http.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 200, response.text
    return decode_png(response.json()["images"][0])


@pytest.mark.parametrize("fill", [0, 1, 2, 3])
@pytest.mark.parametrize("full_res", [False, True])
def test_inpaint_keeps_every_unmasked_pixel(http, fill, full_res):
    picture = _picture(64, 64)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (40, 8, 56, 24))
    out = _inpaint(http, picture, mask, inpainting_fill=fill, inpaint_full_res=full_res, inpaint_full_res_padding=4)
    keep = np.asarray(mask) == 0
    assert np.array_equal(pixels(out)[keep], pixels(picture)[keep])
    assert not np.array_equal(pixels(out)[~keep], pixels(picture)[~keep]), "the masked part was repainted"


def test_inpaint_fill_modes_and_full_res_change_the_result(http):
    picture = _picture(64, 64)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (40, 8, 56, 24))
    results = {
        (fill, full): pixels(_inpaint(http, picture, mask, inpainting_fill=fill, inpaint_full_res=full))
        for fill in (0, 1, 2, 3) for full in (False, True)
    }
    masked = np.asarray(mask) > 0
    distinct = {results[key][masked].tobytes() for key in results}
    assert len(distinct) == len(results), "each fill mode and full-res setting gives its own result"


def test_inpaint_with_a_blurred_mask_keeps_pixels_outside_the_blur_band(http):
    picture = _picture(64, 64)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (24, 24, 40, 40))
    out = _inpaint(http, picture, mask, mask_blur=4, inpainting_fill=1)
    far = np.ones((64, 64), dtype=bool)
    far[12:52, 12:52] = False  # the square plus 3 sigma of blur around it
    assert np.array_equal(pixels(out)[far], pixels(picture)[far])


def test_upscaler_specs_parse_and_reject_clearly():
    from inference.engine.upscalers import UpscalerSpec, UpscalerSpecError

    assert UpscalerSpec.parse("ai-forever/Real-ESRGAN:R-ESRGAN 4x+") == UpscalerSpec("ai-forever/Real-ESRGAN", "R-ESRGAN 4x+")
    assert UpscalerSpec.parse("/models/esrgan/").name == "esrgan"
    assert UpscalerSpec.parse("builtin:tiny-upscaler").name == "tiny-upscaler"
    for bad, says in (("a/b:Lanczos", "reserved"), ("builtin:huge", "builtin upscaler is"), (":x", "empty")):
        with pytest.raises(UpscalerSpecError, match=says):
            UpscalerSpec.parse(bad)


def test_the_one_upscaler_weight_file_read_and_fetched_is_chosen_by_name(tmp_path):
    from inference.engine.upscalers import UpscalerSpec, UpscalerSpecError, fetch_upscaler, upscaler_weight_name

    release = ["README.md", "old/x4-v0.safetensors", "x4.pth", "x4-b.safetensors", "x4-a.safetensors"]
    assert upscaler_weight_name(release, "a/b") == "x4-a.safetensors"  # top level, safetensors, first by name
    assert upscaler_weight_name(["x4.pth", "old/x4.safetensors"], "a/b") == "x4.pth"
    with pytest.raises(UpscalerSpecError, match="a/b: no .safetensors or .pth file at its top level"):
        upscaler_weight_name(["README.md", "old/x4.safetensors"], "a/b")
    # A path that does not exist is reported as such, not looked up on the Hub as a repo id.
    with pytest.raises(UpscalerSpecError, match="no such file or directory"):
        fetch_upscaler(UpscalerSpec.parse(str(tmp_path / "missing")), tmp_path)


def test_a_state_dict_that_is_not_esrgan_is_refused_naming_the_file():
    import torch

    from inference.engine.upscalers import UpscalerSpecError, rrdbnet_from_state_dict

    with pytest.raises(UpscalerSpecError, match="weights.pth: not an ESRGAN"):
        rrdbnet_from_state_dict({"model.0.weight": torch.zeros(1)}, "weights.pth")


def _inpainting_checkpoint(cache_dir, folder):
    """builtin:tiny with a 9-channel UNet (latents + mask + masked image), saved the way an
    inpainting checkpoint (e.g. runwayml/stable-diffusion-inpainting) is."""
    import torch
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline, UNet2DConditionModel

    from inference.engine.builtin import ensure_builtin

    base = StableDiffusionPipeline.from_pretrained(str(ensure_builtin("builtin:tiny", cache_dir)))
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config({**base.unet.config, "in_channels": 9})
    parts = {name: part for name, part in base.components.items() if name != "unet"}
    StableDiffusionInpaintPipeline(**parts, unet=unet).save_pretrained(folder)
    return folder


def test_an_inpainting_checkpoint_is_used_as_such(cache_dir, tmp_path_factory):
    # Its UNet takes 9 channels: a 4-channel masked img2img on it would fail, so a 200
    # with the unmasked pixels kept shows the inpaint pipeline conditioned on the mask.
    folder = _inpainting_checkpoint(cache_dir, tmp_path_factory.mktemp("inpainting") / "tiny-inpainting")
    with ServerProcess(
        "--model", str(folder), cache_dir=cache_dir, log_path=tmp_path_factory.mktemp("logs") / "inpainting.log"
    ) as process, httpx.Client(base_url=process.url, timeout=180) as client:
        picture = _picture(64, 64)
        mask = Image.new("L", (64, 64), 0)
        mask.paste(255, (8, 8, 32, 32))
        out = _inpaint(client, picture, mask, inpainting_fill=1)
        keep = np.asarray(mask) == 0
        assert np.array_equal(pixels(out)[keep], pixels(picture)[keep])
        assert not np.array_equal(pixels(out)[~keep], pixels(picture)[~keep]), "the masked part was repainted"
