"""Operational endpoints: liveness, readiness, Prometheus metrics. Never behind auth."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .dependencies import RuntimeDep

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    summary="Liveness: the process is serving HTTP and no pipeline call is stuck",
    responses={503: {"description": "a pipeline call has made no step progress for twice --stall-seconds"}},
)
async def healthz(runtime: RuntimeDep) -> JSONResponse:
    alive, detail = runtime.liveness()
    if alive:
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "stuck", "detail": detail}, status_code=503)


@router.get(
    "/readyz",
    summary="Readiness: the model is loaded, the queue worker runs and is not stuck, and the server is not draining",
    responses={503: {"description": "loading, warming (with done/total shapes), syncing (adopting the other replicas' "
                                    "checkpoint), draining, failed, worker stopped or wedged"}},
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    ready, state = runtime.readiness()
    body: dict[str, object] = {"status": state, "model": runtime.current_model}
    if state == "warming":
        body["done"], body["total"] = runtime.warmup.done, runtime.warmup.total
    if runtime.batcher is not None:
        body["queue_depth"] = runtime.batcher.depth
    if runtime.load_error:
        body["detail"] = runtime.load_error
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(runtime: RuntimeDep) -> Response:
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
