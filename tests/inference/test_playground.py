"""The web playground at `/` in headless Chromium (Debian's /usr/bin/chromium, installed by
`make test`; nothing is installed here). Leaves a screenshot in tests/artifacts/."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from .conftest import png_b64

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Chromium missing: `make test` installs it"),
]


@pytest.fixture(scope="module")
def page(tiny_server, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(tiny_server.url + "/")
        page.wait_for_selector('#server-status[data-state="ready"]')
        yield page
        assert errors == [], f"JavaScript errors on the page: {errors}"
        browser.close()


def test_generate_shows_images_with_their_parameters(page):
    assert page.title() == "Stable Diffusion playground"
    assert page.text_content("#model-name") == "builtin:tiny"
    assert page.eval_on_selector_all("#sampler_name option", "options => options.length") > 10
    page.fill("#prompt", "a lighthouse on a cliff at dusk, oil painting")
    page.fill("#negative_prompt", "blurry")
    page.fill("#steps", "3")
    page.fill("#batch_size", "2")
    page.fill("#seed", "1234")
    page.click("#generate")
    page.wait_for_selector(".card >> nth=1")
    cards = page.locator(".card")
    assert cards.count() == 2
    first = cards.nth(0)
    assert first.locator(".prompt").text_content() == "a lighthouse on a cliff at dusk, oil painting"
    assert first.locator("[data-param=seed]").text_content() == "1234"
    assert cards.nth(1).locator("[data-param=seed]").text_content() == "1235"
    assert first.locator("[data-param=size]").text_content() == "64×64"
    assert first.locator("[data-param=steps]").text_content() == "3"
    assert first.locator("img").evaluate("img => img.complete && img.naturalWidth") == 64
    assert page.is_hidden("#error") and page.is_hidden("#progress")
    assert page.is_enabled("#generate")


def test_a_validation_error_is_shown_in_the_page_next_to_the_field(page):
    page.fill("#width", "100")
    page.click("#generate")
    page.wait_for_selector("#error:not([hidden])")
    assert "width: must be a multiple of 8, got 100" in page.text_content("#error")
    assert "invalid" in page.get_attribute("#width", "class")
    page.fill("#width", "")
    assert page.get_attribute("#width", "class") in ("", None)  # editing the field clears its mark


def test_img2img_from_an_uploaded_file(page, tmp_path):
    picture = tmp_path / "input.png"
    picture.write_bytes(_png_bytes(Image.new("RGB", (96, 96), (30, 120, 200))))
    page.click(".tab[data-mode=img2img]")
    page.click("#generate")  # without an image first: the page says what is missing
    page.wait_for_selector("#error:not([hidden])")
    assert "needs an image" in page.text_content("#error")
    page.set_input_files("#init-file", str(picture))
    page.wait_for_selector("#init-preview:not([hidden])")
    before = page.locator(".card").count()
    page.fill("#batch_size", "1")
    page.click("#generate")
    # A locator, not wait_for_function: the page's CSP forbids the eval() that needs.
    page.locator(".card").nth(before).wait_for()
    newest = page.locator(".card").nth(0)
    assert newest.locator("[data-param=mode]").text_content() == "img2img, strength 0.75"
    assert page.is_hidden("#error")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)


def test_a_phone_sized_window_does_not_scroll_sideways(page):
    phone = page.context.browser.new_page(viewport={"width": 390, "height": 844})
    phone.goto(page.url)
    phone.wait_for_selector('#server-status[data-state="ready"]')
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    # The controls still fit: the Generate button lies inside the window's width.
    box = phone.locator("#generate").bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390
    phone.close()


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
