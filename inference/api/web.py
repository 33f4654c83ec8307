"""The web playground: static files from `inference/web/`, no build step.

`/` serves the page; its scripts (ES modules under `/web/js/`) and styles are under `/web/`. The page talks to this
server's own `/sdapi/v1` API, with the same origin (and the same auth) as the page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

WEB_DIR = Path(__file__).resolve().parents[1] / "web"

router = APIRouter(tags=["web playground"])


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    # no-cache: after an upgrade the browser revalidates instead of running a stale page.
    return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


class _RevalidatedFiles(StaticFiles):
    """Static files the browser revalidates (ETag) on every load: the page's modules import
    each other, so after an upgrade a cached old module must never meet a new one."""

    def file_response(self, *args, **kwargs) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


def mount_web(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/web", _RevalidatedFiles(directory=WEB_DIR), name="web")
