"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .generation import GenerationService
from .runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_generation_service(request: Request) -> GenerationService:
    return request.app.state.generation


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
GenerationServiceDep = Annotated[GenerationService, Depends(get_generation_service)]
