"""A1111 `/sdapi/v1` routes that describe the server: models, samplers, schedulers,
memory, flags, and the lists of extras this server does not have (empty, in A1111's
shapes, so clients that enumerate them keep working)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..engine.loading import LoadedModel
from ..engine.memory import cuda_figures, ram_figures
from ..engine.samplers import SAMPLERS, SCHEDULES, supported_schedules
from ..service.options import checkpoint_sha256
from .dependencies import RuntimeDep
from .responses import A1111_ERRORS

router = APIRouter(prefix="/sdapi/v1", tags=["AUTOMATIC1111 API"], responses=A1111_ERRORS)

# A1111 schedule types: (aliases, default_rho, need_inner_model), from its sd_schedulers.py.
_SCHEDULE_TRAITS: dict[str, tuple[list[str] | None, float, bool]] = {
    "automatic": (None, -1, False),
    "uniform": (None, -1, True),
    "karras": (None, 7.0, False),
    "exponential": (None, -1, False),
    "beta": (None, -1, False),
    "sgm_uniform": (["SGMUniform"], -1, True),
}


@router.get("/sd-models", summary="The checkpoints this server offers (--model), the default first")
async def sd_models(runtime: RuntimeDep) -> list[dict[str, Any]]:
    runtime.require_started()
    entries = []
    for ref in runtime.checkpoints():
        loaded = runtime.require_registry().loaded(ref.name)
        entries.append(
            {
                "title": ref.title,
                "model_name": ref.name,
                "hash": LoadedModel.hash_of(ref.name),
                "sha256": checkpoint_sha256(ref.name),
                "filename": loaded.source if loaded else ref.name,
                "config": None,
            }
        )
    return entries


@router.get("/loras", summary="LoRA adapters loaded at start (--lora); use them with <lora:NAME:WEIGHT>")
async def loras(runtime: RuntimeDep) -> list[dict[str, Any]]:
    return [
        {"name": spec.name, "alias": spec.name, "path": spec.pinned_source, "metadata": {"default_weight": spec.weight}}
        for spec in runtime.lora_specs()
    ]


@router.post("/refresh-checkpoints", summary="No-op: one model per server")
async def refresh_checkpoints() -> None:
    return None


@router.get("/samplers", summary="Samplers (A1111 names) and the diffusers schedulers behind them")
async def samplers() -> list[dict[str, Any]]:
    listed = []
    for sampler in SAMPLERS:
        options = {key: str(value) for key, value in sampler.options.items()}
        listed.append({"name": sampler.name, "aliases": list(sampler.aliases), "options": options})
    # Pre-1.9 A1111 listed "<sampler> Karras" as samplers of their own; older clients pick from these.
    for sampler in SAMPLERS:
        if "karras" in supported_schedules(sampler.name):
            listed.append({"name": f"{sampler.name} Karras", "aliases": [], "options": {"scheduler": "karras"}})
    return listed


@router.get("/schedulers", summary="Schedule types (sigma spacing), usable with the `scheduler` field")
async def schedulers() -> list[dict[str, Any]]:
    return [
        {
            "name": schedule.name,
            "label": schedule.label,
            "aliases": _SCHEDULE_TRAITS[schedule.name][0],
            "default_rho": _SCHEDULE_TRAITS[schedule.name][1],
            "need_inner_model": _SCHEDULE_TRAITS[schedule.name][2],
        }
        for schedule in SCHEDULES
    ]


@router.get("/scripts", summary="Scripts: none")
async def scripts() -> dict[str, list]:
    return {"txt2img": [], "img2img": []}


@router.get("/embeddings", summary="Textual-inversion embeddings: none")
async def embeddings() -> dict[str, dict]:
    return {"loaded": {}, "skipped": {}}


def _empty_list_route(path: str, what: str) -> None:
    async def empty() -> list:
        return []

    router.add_api_route(path, empty, methods=["GET"], summary=f"{what}: none", name=path.strip("/"))


for _path, _what in (
    ("/hypernetworks", "Hypernetworks"),
    ("/sd-vae", "Separate VAEs"),
    ("/face-restorers", "Face restorers"),
    ("/realesrgan-models", "RealESRGAN models"),
    ("/prompt-styles", "Prompt styles"),
    ("/extensions", "Extensions"),
):
    _empty_list_route(_path, _what)


@router.post("/refresh-loras", summary="No-op: adapters are loaded at start")
async def refresh_loras() -> None:
    return None


@router.get("/cmd-flags", summary="How the server was started (secrets left out)")
async def cmd_flags(runtime: RuntimeDep) -> dict[str, Any]:
    settings = runtime.settings
    flags = settings.model_dump(mode="json")
    # The password file's location is configuration, its existence is all a client needs.
    flags["auth_file"] = settings.auth_file is not None
    flags["peer_token_file"] = settings.peer_token_file is not None
    flags.update(
        {
            "api": True,
            "nowebui": False,
            "listen": settings.host not in ("127.0.0.1", "localhost"),
            "cors_allow_origins": ",".join(settings.cors_origins) or None,
            "ckpt": settings.default_model,
            # A1111 prints these credentials here; this server never does.
            "api_auth": None,
            "gradio_auth": None,
        }
    )
    return flags


@router.get("/memory", summary="Process RAM and accelerator memory, in bytes")
async def memory() -> dict[str, Any]:
    return {"ram": ram_figures(), "cuda": cuda_figures()}
