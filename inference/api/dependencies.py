"""What the routes need, as FastAPI dependencies: the one place that reads `app.state`.

`api/app.py` builds the service objects once per app and puts them on `app.state`;
routes ask for them by type (`runtime: RuntimeDep`), never reach into the app.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..service.generation import GenerationService
from ..service.options import A1111State
from ..service.peers import ImageLinks, ReplicaHistory
from ..service.replica_checkpoint import ReplicaCheckpoint
from ..service.replica_progress import ReplicaProgress
from ..service.runtime import DisconnectCheck, Runtime


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_generation_service(request: Request) -> GenerationService:
    return request.app.state.generation


def get_a1111_state(request: Request) -> A1111State:
    return request.app.state.a1111


def get_checkpoint(request: Request) -> ReplicaCheckpoint:
    return request.app.state.checkpoint


def get_progress(request: Request) -> ReplicaProgress:
    return request.app.state.progress


def get_history(request: Request) -> ReplicaHistory:
    return request.app.state.history


def get_image_links(request: Request) -> ImageLinks:
    return request.app.state.image_links


def get_disconnect_check(request: Request) -> DisconnectCheck:
    """How the service asks, while a request waits in the queue, whether its client left."""
    return request.is_disconnected


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
GenerationServiceDep = Annotated[GenerationService, Depends(get_generation_service)]
A1111StateDep = Annotated[A1111State, Depends(get_a1111_state)]
CheckpointDep = Annotated[ReplicaCheckpoint, Depends(get_checkpoint)]
ProgressDep = Annotated[ReplicaProgress, Depends(get_progress)]
HistoryDep = Annotated[ReplicaHistory, Depends(get_history)]
ImageLinksDep = Annotated[ImageLinks, Depends(get_image_links)]
DisconnectCheckDep = Annotated[DisconnectCheck, Depends(get_disconnect_check)]
