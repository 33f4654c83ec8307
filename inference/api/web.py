"""The web playground: static files from `inference/web/`, no build step.

`/` serves the page; its scripts and styles are under `/web/`. The page talks to this
server's own `/sdapi/v1` API, with the same origin (and the same auth) as the page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parents[1] / "web"

router = APIRouter(tags=["web playground"])


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    # no-cache: after an upgrade the browser revalidates instead of running a stale page.
    return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def mount_web(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
