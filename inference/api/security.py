"""Browser hardening: security headers on every response, and `/docs` served from this
server (Swagger UI's files ship in the `fastapi-offline` package), so it works in an
air-gapped cluster and under a strict Content-Security-Policy.

The policy lets a page run scripts and styles from this server only (no inline script,
no `eval`), show images from itself, `data:` and `blob:` URLs (generated PNGs), talk to
this server only, and never be framed. The web playground is written to fit it; `/docs`
adds the hash of the one inline script FastAPI's Swagger page carries.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import re

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
DOCS_PATH = "/docs"
DOCS_ASSETS_PATH = "/docs-assets"
_SWAGGER_DIST = importlib.resources.files("fastapi_offline") / "static"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


class SecurityHeadersMiddleware:
    """Adds the security headers (and the default policy, unless a route set its own)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def script_hash_sources(html: str) -> str:
    """CSP sources (`'sha256-...'`) allowing exactly the inline scripts of `html`."""
    hashes = (base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode() for body in _INLINE_SCRIPT.findall(html))
    return " ".join(f"'sha256-{digest}'" for digest in hashes)


def mount_docs(app: FastAPI) -> None:
    """Swagger UI at /docs, its files at /docs-assets; the app must be built with
    `docs_url=None, redoc_url=None` (ReDoc needs inline styles, so it is not served)."""
    app.mount(DOCS_ASSETS_PATH, StaticFiles(directory=str(_SWAGGER_DIST)), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API documentation",
            swagger_js_url=f"{root}{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_PATH}/favicon.png",
            oauth2_redirect_url=None,
            # Swagger's online validator badge would call a third-party host.
            swagger_ui_parameters={"validatorUrl": None},
        )
        html = bytes(page.body).decode("utf-8")
        policy = CONTENT_SECURITY_POLICY.replace("script-src 'self'", f"script-src 'self' {script_hash_sources(html)}")
        return HTMLResponse(html, headers={"Content-Security-Policy": policy, "Cache-Control": "no-cache"})
