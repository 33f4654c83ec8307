"""The web playground at `/` in headless Chromium (Debian's /usr/bin/chromium, installed by
`make test`; nothing is installed here), one test per tab, against the real server.

Every page runs under the Content-Security-Policy the server is meant to send (added here to
the responses, so the test holds before and after the header lands): a blocked inline script,
style or eval would show up as a violation and fail the test. Elements are found by role and
label, as a screen reader finds them. Leaves screenshots in tests/artifacts/.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from PIL import Image, ImageChops
from playwright.sync_api import expect

from .conftest import decode_png

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-ancestors 'none'"
)
# Records CSP violations in the page (init scripts run outside the page's CSP).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`));
"""
SMALL = {"Width": "64", "Height": "64", "Steps": "2", "Images": "1"}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Chromium missing: `make test` installs it"),
]


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


class Session:
    """A browser context on one server, its page, and what went wrong in it."""

    def __init__(self, browser, base_url: str, viewport: dict):
        self.context = browser.new_context(viewport=viewport)
        self.context.add_init_script(RECORD_VIOLATIONS)
        self.context.route(_is_page_or_asset, _with_csp)
        self.errors: list[str] = []
        self.base_url = base_url
        self.page = self.open_page()

    def open_page(self):
        page = self.context.new_page()
        page.set_default_timeout(30_000)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on(
            "console",
            lambda m: self.errors.append(f"console: {m.text}") if "Content Security Policy" in m.text else None,
        )
        page.goto(self.base_url + "/")
        wait_ready(page)
        return page

    def check(self) -> None:
        violations = self.page.evaluate("window.__cspViolations")
        assert violations == [] and self.errors == [], f"CSP violations or JavaScript errors: {violations} {self.errors}"

    def close(self) -> None:
        self.context.close()


def _is_page_or_asset(url: str) -> bool:
    path = urlparse(url).path
    return path == "/" or path.startswith("/web/")


def _with_csp(route) -> None:
    response = route.fetch()
    route.fulfill(response=response, headers={**response.headers, "content-security-policy": CSP})


@pytest.fixture(scope="module")
def session(browser, tiny_server):
    session = Session(browser, tiny_server.url, {"width": 1280, "height": 900})
    yield session
    session.close()


@pytest.fixture
def page(session):
    """The module's desktop page, on the Text to image tab, checked for CSP violations after each test."""
    page = session.page
    if page.get_by_role("dialog").count():
        page.keyboard.press("Escape")
    page.get_by_role("tab", name="Text to image").click()
    yield page
    session.check()


@pytest.fixture(scope="module")
def extras_merged(tiny_server) -> bool:
    """Whether this server has the Extras routes and hires fix (built in parallel to this UI)."""
    response = httpx.post(f"{tiny_server.url}/sdapi/v1/extra-single-image", json={}, timeout=30)
    return response.status_code != 404


def wait_ready(page) -> None:
    page.wait_for_selector('#server-status[data-state="ready"]')


# -- helpers ---------------------------------------------------------------------------


def fill_fields(page, values: dict[str, str]) -> None:
    for label, value in values.items():
        page.get_by_label(label, exact=True).fill(value)


def wait_for_gallery(page, compare: str, count: int, timeout: float = 30_000) -> None:
    """Waits until the gallery holds `compare count` images. (A function, not a string:
    the page's CSP forbids eval, which a string predicate needs.)"""
    test = {">": "n > count", ">=": "n >= count", "===": "n === count"}[compare]
    page.wait_for_function(
        f"(count) => {{ const n = document.querySelectorAll('#gallery li').length; return {test}; }}",
        arg=count, timeout=timeout,
    )


def thumbnails(page):
    return page.get_by_role("list", name="Gallery").get_by_role("listitem")


def generate_and_wait(page, *, click: str = "Generate") -> None:
    before = thumbnails(page).count()
    page.get_by_role("button", name=click, exact=True).click()
    wait_for_gallery(page, ">", before)
    assert page.locator("#error").is_hidden(), page.locator("#error").text_content()


def newest_image(page) -> Image.Image:
    """The newest gallery image, read back from the page (its blob URL)."""
    # Through a canvas: the CSP's connect-src does not let fetch() read blob: URLs.
    data = page.evaluate(
        """async () => {
            const img = document.querySelector('#gallery img');
            await img.decode();
            const canvas = document.createElement('canvas');
            canvas.width = img.naturalWidth;
            canvas.height = img.naturalHeight;
            canvas.getContext('2d').drawImage(img, 0, 0);
            return canvas.toDataURL('image/png');
        }"""
    )
    image = Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1])))
    image.load()
    return image


def open_newest(page):
    thumbnails(page).first.get_by_role("button").click()
    viewer = page.get_by_role("dialog")
    viewer.wait_for()
    return viewer


def viewer_param(viewer, name: str) -> str:
    return viewer.locator(f"#viewer-params dd[data-param={name}]").text_content()


def png_file(tmp_path, image: Image.Image, name: str = "input.png") -> Path:
    path = tmp_path / name
    image.save(path, format="PNG")
    return path


def pattern(size: int = 64) -> Image.Image:
    """A picture whose every region differs, so a kept region is recognisable."""
    image = Image.new("RGB", (size, size))
    image.putdata([((x * 4) % 256, (y * 4) % 256, ((x + y) * 2) % 256) for y in range(size) for x in range(size)])
    return image


def sent_json(request) -> dict:
    return json.loads(request.post_data)


# -- tests -----------------------------------------------------------------------------


def test_the_modules_are_revalidated_on_every_load(tiny_server):
    # After an upgrade an old cached module must never meet a new one.
    response = httpx.get(f"{tiny_server.url}/web/js/main.js", timeout=30)
    assert response.status_code == 200 and "javascript" in response.headers["content-type"]
    assert response.headers["cache-control"] == "no-cache" and response.headers["etag"]
    assert 'import { Gallery' in response.text


def test_the_page_runs_under_the_strict_csp(session, page):
    # The header really applies: an inline style attribute is refused (and recorded, then forgotten).
    width = page.evaluate(
        """() => {
            document.body.insertAdjacentHTML('beforeend', '<div id="csp-probe" style="width: 123px"></div>');
            const probe = document.getElementById('csp-probe');
            const width = getComputedStyle(probe).width;
            probe.remove();
            return width;
        }"""
    )
    assert width != "123px"
    page.wait_for_function("() => window.__cspViolations.some((v) => v.startsWith('style-src'))")
    page.evaluate("window.__cspViolations.length = 0")
    session.errors.clear()
    assert page.title() == "Stable Diffusion playground"
    # The pickers come from the API.
    expect(page.get_by_label("Model")).to_have_value("builtin:tiny")
    assert page.get_by_label("Sampler").locator("option").count() > 10
    assert page.get_by_label("LoRA").is_disabled()  # none loaded on this server
    assert page.get_by_label("LoRA").locator("option").all_text_contents() == ["none loaded"]


def test_model_and_lora_pickers_come_from_the_api(browser, cache_dir, tmp_path_factory):
    from inference.api.app import create_app
    from inference.config import ServerSettings
    from inference.engine.builtin import ensure_builtin

    from .lora_fixture import make_tiny_lora
    from .server import ThreadedServer

    lora = make_tiny_lora(ensure_builtin("builtin:tiny", cache_dir), tmp_path_factory.mktemp("lora") / "ink-style")
    settings = ServerSettings(model=["builtin:tiny", "builtin:tiny-sdxl"], lora=[f"{lora}:ink:0.8"], cache_dir=cache_dir)
    with ThreadedServer(create_app(settings)) as server:
        session = Session(browser, server.url, {"width": 1280, "height": 900})
        page = session.page
        try:
            model = page.get_by_label("Model")
            assert model.locator("option").all_text_contents() == ["builtin:tiny", "builtin:tiny-sdxl"]
            assert model.input_value() == "builtin:tiny"
            assert page.get_by_label("LoRA").input_value() == "ink"
            assert page.get_by_label("Weight").input_value() == "0.8"  # the server's default weight
            page.get_by_label("Prompt", exact=True).fill("a cat")
            page.get_by_role("button", name="Add to prompt").click()
            expect(page.get_by_label("Prompt", exact=True)).to_have_value("a cat <lora:ink:0.8>")
            # The current model is not overridden; another one is, for this request only.
            # (Answered here, not by the server: loading the second model is not what is tested.)
            bodies = []
            page.route("**/sdapi/v1/txt2img", lambda route: (bodies.append(sent_json(route.request)), route.abort()))
            page.get_by_role("button", name="Generate").click()
            model.select_option("builtin:tiny-sdxl")
            page.get_by_role("alert").wait_for()
            page.get_by_role("button", name="Generate").click()
            expect(page.get_by_role("button", name="Generate")).to_be_enabled()
            assert len(bodies) == 2, bodies
            assert "override_settings" not in bodies[0] and bodies[0]["prompt"] == "a cat <lora:ink:0.8>"
            assert bodies[1]["override_settings"] == {"sd_model_checkpoint": "builtin:tiny-sdxl"}
            session.check()
        finally:
            session.close()


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


def test_gallery_survives_a_reload(session, page):
    page.get_by_label("Prompt", exact=True).fill("kept across reloads")
    fill_fields(page, SMALL)
    page.get_by_label("Seed", exact=True).fill("9001")
    generate_and_wait(page)
    count = thumbnails(page).count()
    page.reload()
    wait_ready(page)
    wait_for_gallery(page, "===", count)
    assert page.get_by_role("heading", name="Gallery").text_content().endswith(f"({count})")
    page.get_by_label("Prompt", exact=True).fill("")
    page.get_by_role("button", name="Open image 1: kept across reloads").click()
    viewer = page.get_by_role("dialog")
    assert viewer_param(viewer, "seed") == "9001"
    assert viewer.get_by_role("link", name="Download").get_attribute("download") == "txt2img-9001.png"
    viewer.get_by_role("button", name="Send to inpaint").click()
    expect(page.get_by_role("tab", name="Inpaint")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("kept across reloads")
    expect(page.get_by_label("Seed", exact=True)).to_have_value("9001")
    expect(page.get_by_role("img", name="Mask: draw over the parts to repaint")).to_be_visible()
    # Deleting from the viewer removes it for good.
    page.get_by_role("button", name="Open image 1: kept across reloads").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.reload()
    wait_ready(page)
    wait_for_gallery(page, "===", count - 1)
    assert page.get_by_role("button", name="Open image 1: kept across reloads").count() == 0


def test_keyboard_help_lists_the_shortcuts(page):
    page.locator("body").press("?")
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    help_dialog.wait_for()
    text = help_dialog.text_content()
    assert "Generate" in text and "Interrupt" in text
    page.keyboard.press("Escape")
    assert help_dialog.is_hidden()
    page.keyboard.press("Alt+4")
    expect(page.get_by_role("tab", name="Extras")).to_have_attribute("aria-selected", "true")


def test_live_progress_interrupt_and_skip(browser, slow_server):
    """On a server whose steps take 0.1 s: the bar moves, Escape interrupts, Skip skips."""
    session = Session(browser, slow_server.url, {"width": 1280, "height": 900})
    page = session.page
    try:
        fill_fields(page, {**SMALL, "Steps": "40"})
        page.get_by_label("Prompt", exact=True).fill("slow")
        page.get_by_role("button", name="Generate").click()
        wait_for_steps(page)
        assert int(page.get_by_role("progressbar").get_attribute("aria-valuenow")) >= 0
        assert page.get_by_role("button", name="Generate").is_disabled()
        with page.expect_request("**/sdapi/v1/interrupt"):
            page.keyboard.press("Escape")
        page.get_by_role("alert").get_by_text("Stopped").wait_for()
        viewer = open_newest(page)
        assert viewer_param(viewer, "note") == "stopped early"
        page.keyboard.press("Escape")

        before = thumbnails(page).count()
        page.get_by_role("button", name="Generate").click()
        wait_for_steps(page)
        with page.expect_request("**/sdapi/v1/skip"):
            page.get_by_role("button", name="Skip").click()
        wait_for_gallery(page, ">", before, timeout=10_000)
        assert page.locator("#progress").is_hidden()
        session.check()
    finally:
        session.close()


def wait_for_steps(page) -> None:
    page.wait_for_function("() => document.querySelector('#progress-text').textContent.startsWith('Step ')")


def test_a_phone_can_use_every_tab(browser, tiny_server):
    session = Session(browser, tiny_server.url, {"width": 390, "height": 844})
    phone = session.page
    try:
        for tab in ("Text to image", "Image to image", "Inpaint", "Extras", "PNG info"):
            phone.get_by_role("tab", name=tab).click()
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390, f"sideways scroll on {tab}"
        phone.get_by_role("tab", name="Text to image").click()
        fill_fields(phone, SMALL)
        phone.get_by_label("Prompt", exact=True).fill("on a phone")
        button = phone.get_by_role("button", name="Generate")
        button.scroll_into_view_if_needed()
        box = button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        generate_and_wait(phone)
        viewer = open_newest(phone)
        viewer_box = viewer.bounding_box()
        assert viewer_box["x"] >= 0 and viewer_box["x"] + viewer_box["width"] <= 390
        assert viewer_param(viewer, "prompt") == "on a phone"
        phone.keyboard.press("Escape")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        ARTIFACTS.mkdir(exist_ok=True)
        phone.screenshot(path=str(ARTIFACTS / "playground-phone.png"), full_page=True)
        session.check()
    finally:
        session.close()
