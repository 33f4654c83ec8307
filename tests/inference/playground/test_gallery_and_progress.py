"""The playground's gallery across reloads, and live progress with interrupt and skip."""

from __future__ import annotations

from playwright.sync_api import expect

from .conftest import (
    PLAYGROUND,
    SMALL,
    Session,
    fill_fields,
    generate_and_wait,
    open_newest,
    thumbnails,
    viewer_param,
    wait_for_gallery,
    wait_ready,
)

pytestmark = PLAYGROUND


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
