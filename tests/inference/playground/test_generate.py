"""The playground's generation tabs: text to image, image to image, inpaint, hires fix."""

from __future__ import annotations

import pytest
from PIL import Image, ImageChops

from ..conftest import decode_png
from .conftest import (
    ARTIFACTS,
    PLAYGROUND,
    SMALL,
    fill_fields,
    generate_and_wait,
    newest_image,
    open_newest,
    pattern,
    png_file,
    sent_json,
    thumbnails,
    viewer_param,
    wait_for_gallery,
)

pytestmark = PLAYGROUND


def test_generate_shows_images_with_their_parameters(page):
    page.get_by_label("Prompt", exact=True).fill("a lighthouse on a cliff at dusk, oil painting")
    page.get_by_label("Negative prompt").fill("blurry")
    fill_fields(page, {**SMALL, "Images": "2"})
    page.get_by_label("Seed", exact=True).fill("1234")
    with page.expect_request("**/sdapi/v1/txt2img") as sent:
        generate_and_wait(page)
    request = sent_json(sent.value)
    assert request["seed"] == 1234 and request["batch_size"] == 2 and request["width"] == 64
    assert "enable_hr" not in request  # hires fix off unless asked for
    wait_for_gallery(page, ">=", 2)
    viewer = open_newest(page)  # newest first: the batch's first image
    assert viewer_param(viewer, "prompt") == "a lighthouse on a cliff at dusk, oil painting"
    assert viewer_param(viewer, "seed") == "1234"
    assert viewer_param(viewer, "size") == "64×64"
    assert viewer_param(viewer, "steps") == "2"
    assert "Seed: 1234" in viewer.locator("#viewer-infotext").text_content()
    page.keyboard.press("Escape")
    second = thumbnails(page).nth(1)
    second.get_by_role("button").click()
    assert viewer_param(page.get_by_role("dialog"), "seed") == "1235"
    page.get_by_role("button", name="Close").click()
    assert newest_image(page).size == (64, 64)
    assert page.locator("#progress").is_hidden() and page.get_by_role("button", name="Generate").is_enabled()


def test_a_validation_error_is_shown_in_the_page_next_to_the_field(page):
    width = page.get_by_label("Width")
    width.fill("100")
    page.get_by_role("button", name="Generate").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "must be a multiple of 8, got 100" in alert.text_content()
    assert "invalid" in width.get_attribute("class")
    width.fill("64")
    assert "invalid" not in (width.get_attribute("class") or "")  # editing the field clears its mark


def test_img2img_from_an_uploaded_file(page, tmp_path):
    page.get_by_role("tab", name="Image to image").click()
    page.get_by_role("button", name="Generate").click()  # without an image first: the page says what is missing
    page.get_by_role("alert").wait_for()
    assert "needs an image" in page.get_by_role("alert").text_content()
    page.get_by_label("choose a source image").set_input_files(png_file(tmp_path, Image.new("RGB", (64, 64), (30, 120, 200))))
    page.get_by_role("img", name="Source image").wait_for()
    fill_fields(page, SMALL)
    before = thumbnails(page).count()
    with page.expect_request("**/sdapi/v1/img2img") as sent:
        page.keyboard.press("Control+Enter")  # the shortcut generates
    wait_for_gallery(page, ">", before)
    request = sent_json(sent.value)
    assert request["denoising_strength"] == 0.75 and len(request["init_images"]) == 1
    assert "mask" not in request
    assert thumbnails(page).first.get_attribute("data-kind") == "img2img"
    viewer = open_newest(page)
    assert viewer_param(viewer, "denoising") == "0.75"
    page.keyboard.press("Escape")


def test_inpaint_by_drawing_a_mask(page, tmp_path):
    source = pattern()
    page.get_by_role("tab", name="Inpaint").click()
    page.get_by_label("choose a source image").set_input_files(png_file(tmp_path, source))
    canvas = page.get_by_role("img", name="Mask: draw over the parts to repaint")
    canvas.wait_for()
    assert page.get_by_role("img", name="Source image").is_hidden()  # the canvas shows it instead
    page.get_by_label("Brush size").fill("120")
    box = canvas.bounding_box()
    # One stroke down the left quarter of the picture.
    x = box["x"] + box["width"] * 0.2
    page.mouse.move(x, box["y"] + 2)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(x, box["y"] + box["height"] * step / 10 - 2)
    page.mouse.up()
    painted = mask_alpha(page)
    assert painted[32 * 64 + 12] == 255 and painted[32 * 64 + 50] == 0
    # Invert flips the mask; erasing a strip unpaints it.
    page.get_by_role("button", name="Invert mask").click()
    inverted = mask_alpha(page)
    assert inverted[32 * 64 + 12] == 0 and inverted[32 * 64 + 50] == 255
    page.get_by_role("button", name="Invert mask").click()
    assert mask_alpha(page) == painted
    page.get_by_role("button", name="Erase", exact=True).click()
    assert page.get_by_role("button", name="Erase", exact=True).get_attribute("aria-pressed") == "true"
    page.mouse.move(box["x"] + 2, box["y"] + box["height"] * 0.1)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.1)
    page.mouse.up()
    erased = mask_alpha(page)
    assert erased[6 * 64 + 12] == 0 and erased[40 * 64 + 12] == 255
    page.get_by_role("button", name="Paint", exact=True).click()

    fill_fields(page, {**SMALL, "Mask blur": "0"})
    page.get_by_label("Denoising strength").fill("1")
    page.get_by_label("Masked content").select_option(label="latent noise")
    with page.expect_request("**/sdapi/v1/img2img") as sent:
        generate_and_wait(page)
    request = sent_json(sent.value)
    assert (request["mask_blur"], request["inpainting_fill"], request["inpaint_full_res"]) == (0, 2, False)
    assert request["denoising_strength"] == 1
    mask = decode_png(request["mask"]).convert("L")
    assert mask.size == (64, 64)
    assert mask.getpixel((12, 40)) == 255 and mask.getpixel((12, 6)) == 0 and mask.getpixel((50, 32)) == 0
    assert set(mask.getdata()) <= set(range(256)) and mask.getextrema() == (0, 255)

    result = newest_image(page).convert("RGB")
    assert result.size == (64, 64)
    # Unmasked pixels are the source's; the painted stroke is repainted.
    kept = (32, 0, 64, 64)
    assert ImageChops.difference(result.crop(kept), source.crop(kept)).getbbox() is None
    repainted = (8, 30, 16, 60)
    assert ImageChops.difference(result.crop(repainted), source.crop(repainted)).getbbox() is not None
    viewer = open_newest(page)
    assert viewer.get_by_role("heading").text_content() == "Inpaint"
    page.keyboard.press("Escape")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "playground-inpaint.png"), full_page=True)


def mask_alpha(page) -> list[int]:
    return page.evaluate(
        """() => {
            const canvas = document.querySelector('#mask-canvas');
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            return Array.from({ length: data.length / 4 }, (_, i) => data[i * 4 + 3]);
        }"""
    )


def test_hires_fix_sends_a1111_fields(page):
    assert page.get_by_label("Upscale by").is_hidden()  # options show only when the fix is on
    page.get_by_label("Hires fix").check()
    upscaler = page.get_by_label("Hires upscaler")
    assert upscaler.locator("option").count() >= 1
    fill_fields(page, {**SMALL, "Upscale by": "2", "Hires steps": "1"})
    page.get_by_label("Hires denoising").fill("0.5")
    page.get_by_label("Prompt", exact=True).fill("hires lighthouse")
    with page.expect_request("**/sdapi/v1/txt2img") as sent:
        generate_and_wait(page)
    request = sent_json(sent.value)
    assert request["enable_hr"] is True
    assert request["hr_scale"] == 2 and request["hr_second_pass_steps"] == 1
    assert request["denoising_strength"] == 0.5
    assert request["hr_upscaler"] == upscaler.input_value() and request["hr_upscaler"]
    page.get_by_label("Hires fix").uncheck()


def test_hires_fix_makes_the_image_at_the_hires_size(page, extras_merged):
    if not extras_merged:
        pytest.skip("this server has no hires fix yet (the A1111 features branch adds it with the Extras routes)")
    page.get_by_label("Hires fix").check()
    fill_fields(page, {**SMALL, "Upscale by": "2", "Hires steps": "1"})
    page.get_by_label("Seed", exact=True).fill("77")
    generate_and_wait(page)
    page.get_by_label("Hires fix").uncheck()
    assert newest_image(page).size == (128, 128)
    viewer = open_newest(page)
    assert viewer_param(viewer, "size") == "128×128"
    assert viewer_param(viewer, "hires").startswith("×2 ")
    assert "Hires upscale: 2" in viewer.locator("#viewer-infotext").text_content()
    page.keyboard.press("Escape")
