"""The web playground at `/` in headless Chromium (Debian's /usr/bin/chromium, installed by
`make test`; nothing is installed here), one test per tab, against the real server.

Every page runs under the Content-Security-Policy the server is meant to send (added here to
the responses, so the test holds before and after the header lands): a blocked inline script,
style or eval would show up as a violation and fail the test. Elements are found by role and
label, as a screen reader finds them. Leaves screenshots in tests/artifacts/.

This file: the browser, one desktop page shared by the package's test files (as one file's
tests shared it before they were split by concern), and the helpers they use.
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
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
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

# Every test module here sets `pytestmark = PLAYGROUND` (a conftest's pytestmark applies to none).
PLAYGROUND = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Chromium missing: `make test` installs it"),
]


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="package")
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


@pytest.fixture(scope="package")
def session(browser, tiny_server):
    session = Session(browser, tiny_server.url, {"width": 1280, "height": 900})
    yield session
    session.close()


@pytest.fixture
def page(session):
    """The package's desktop page, on the Text to image tab, checked for CSP violations after each test."""
    page = session.page
    if page.get_by_role("dialog").count():
        page.keyboard.press("Escape")
    page.get_by_role("tab", name="Text to image").click()
    yield page
    session.check()


@pytest.fixture(scope="package")
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
