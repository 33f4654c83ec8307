"""StableStudio's history route (what its webui plugin probes as the "history plugin").

`POST /StableStudio/get-generated-images {"limit": n}` lists the most recent images of
requests sent with `save_images: true` (StableStudio always sends it), newest first. The
history lives in memory, bounded by `--history-size`, and is empty after a restart. With
peers (service/peers.py), the answer holds every replica's newest entries.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ..service.peers import LOCAL_ONLY_HEADER
from .dependencies import HistoryDep
from .responses import A1111_ERRORS

router = APIRouter(prefix="/StableStudio", tags=["StableStudio"], responses=A1111_ERRORS)


class HistoryRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    limit: int | None = Field(None, ge=0, description="most images to return; all that are kept by default")


class HistoryImage(BaseModel):
    image_name: str
    create_date: float = Field(description="seconds since the epoch")
    content: str = Field(description="base64 PNG, with its parameters chunk")
    width: int
    height: int


@router.post(
    "/get-generated-images", name="stablestudio_history", response_model=list[HistoryImage],
    summary="Recently generated images (of every replica, with --peers)",
)
async def get_generated_images(
    request: Request, history: HistoryDep, body: HistoryRequest | None = None
) -> list[HistoryImage]:
    # Other replicas' entries are fetched from them (service/peers.py), with the client's credentials.
    entries = await history.recent(
        body.limit if body is not None else None,
        request.app.url_path_for("stablestudio_history"),
        authorization=request.headers.get("authorization"),
        local_only=LOCAL_ONLY_HEADER in request.headers,
    )
    return [HistoryImage(**entry.__dict__) for entry in entries]
