"""The playground's Extras and PNG info tabs."""

from __future__ import annotations

import httpx
import pytest
from PIL import Image, ImageChops
from playwright.sync_api import expect

from ..conftest import decode_png
from .conftest import (
    PLAYGROUND,
    generate_and_wait,
    newest_image,
    open_newest,
    pattern,
    png_file,
    sent_json,
    viewer_param,
)

pytestmark = PLAYGROUND


def test_extras_upscales_an_image(page, tmp_path, extras_merged):
    if not extras_merged:
        pytest.skip("this server has no POST /sdapi/v1/extra-single-image yet (the A1111 features branch adds it)")
    page.get_by_role("tab", name="Extras").click()
    page.get_by_role("button", name="Upscale", exact=True).click()  # without an image: said, not sent
    assert "needs an image" in page.get_by_role("alert").text_content()
    page.get_by_label("choose an image to upscale").set_input_files(png_file(tmp_path, pattern(48)))
    page.get_by_role("img", name="Image to upscale").wait_for()
    upscaler = page.get_by_label("Upscaler 1")
    names = upscaler.locator("option").all_text_contents()
    assert "None" in names and len(names) > 1, names
    assert upscaler.input_value() != "None"
    page.get_by_label("Scale by", exact=True).fill("2")
    with page.expect_request("**/sdapi/v1/extra-single-image") as sent:
        generate_and_wait(page, click="Upscale")
    request = sent_json(sent.value)
    assert request["upscaling_resize"] == 2 and request["upscaler_1"] == upscaler.input_value()
    assert decode_png(request["image"]).size == (48, 48)
    assert newest_image(page).size == (96, 96)
    viewer = open_newest(page)
    assert viewer.get_by_role("heading").text_content() == "Extras"
    assert viewer_param(viewer, "upscaler") == upscaler.input_value()
    # And from the gallery straight back into Extras.
    viewer.get_by_role("button", name="Send to extras").click()
    expect(page.get_by_role("tab", name="Extras")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("img", name="Image to upscale")).to_be_visible()


def test_png_info_round_trip(page, tiny_server):
    made = httpx.post(
        f"{tiny_server.url}/sdapi/v1/txt2img",
        json={"prompt": "a red fox in snow", "negative_prompt": "text", "seed": 4242, "steps": 3, "cfg_scale": 5.5,
              "width": 64, "height": 64, "sampler_name": "Euler a"},
        timeout=120,
    ).json()["images"][0]
    page.get_by_role("tab", name="PNG info").click()
    # Dropped as a file would be from the desktop.
    page.locator("#png-zone").dispatch_event("drop", {"dataTransfer": page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], 'fox.png', { type: 'image/png' }));
            return transfer;
        }""",
        made,
    )})
    params = page.get_by_label("Parameters read from the PNG")
    params.get_by_text("4242").wait_for()
    assert "a red fox in snow" in page.locator("#png-text").text_content()
    page.get_by_role("button", name="Send to txt2img").click()
    expect(page.get_by_role("tab", name="Text to image")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("a red fox in snow")
    expect(page.get_by_label("Negative prompt")).to_have_value("text")
    expect(page.get_by_label("Seed", exact=True)).to_have_value("4242")
    expect(page.get_by_label("Steps", exact=True)).to_have_value("3")
    expect(page.get_by_label("CFG scale")).to_have_value("5.5")
    assert (page.get_by_label("Width").input_value(), page.get_by_label("Height").input_value()) == ("64", "64")
    expect(page.get_by_label("Sampler")).to_have_value("Euler a")
    generate_and_wait(page)
    # The same parameters make the same picture.
    original = decode_png(made).convert("RGB")
    assert ImageChops.difference(newest_image(page).convert("RGB"), original).getbbox() is None


def test_a_png_without_parameters_says_so(page, tmp_path):
    page.get_by_role("tab", name="PNG info").click()
    page.get_by_label("choose a PNG file").set_input_files(png_file(tmp_path, Image.new("RGB", (8, 8))))
    page.get_by_text("This image carries no generation parameters.").wait_for()
    assert page.get_by_role("button", name="Send to txt2img").is_disabled()
