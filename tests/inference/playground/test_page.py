"""The playground page itself: caching, the CSP, the pickers, shortcuts, a phone's screen."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from .conftest import (
    ARTIFACTS,
    PLAYGROUND,
    SMALL,
    Session,
    fill_fields,
    generate_and_wait,
    open_newest,
    sent_json,
    viewer_param,
)

pytestmark = PLAYGROUND


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

    from ..lora_fixture import make_tiny_lora
    from ..server import ThreadedServer

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
