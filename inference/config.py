"""Server settings: one pydantic model that is the single source of every CLI flag and
its `SD_*` environment variable (the Kubernetes Deployment configures the server through
the environment; a developer through flags)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .engine.lora import LoraSpec

ENV_PREFIX = "SD_"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stable-diffusion-k8s"


def _split_commas(value):
    """A list setting from the environment (or one flag) is comma-separated."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [part.strip() for item in value for part in str(item).split(",") if part.strip()]
    return value


class ModelSettings(BaseModel):
    """Which models, and where their weights are cached (shared by `serve` and `download`)."""

    model_config = ConfigDict(extra="forbid")

    model: list[str] = Field(
        default_factory=lambda: ["builtin:tiny"],
        description="checkpoint: builtin:tiny, builtin:tiny-sdxl, a Hugging Face repo id[@revision] or a local "
        "pipeline directory; repeat (or comma-separate) to offer several, the first is the default",
        min_length=1,
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of the first model")
    lora: list[str] = Field(
        default_factory=list,
        description="LoRA adapter REPO_OR_DIR[:NAME][:WEIGHT], activated per request by <lora:NAME:WEIGHT>; repeatable",
    )
    cache_dir: Path = Field(default_factory=default_cache_dir, description="model cache directory")
    # `download` reads these too: the dtype decides which weight files (fp16 variant or
    # full precision) are fetched, so the init container fetches what `serve` will load.
    device: str = Field("auto", description="torch device: auto (cuda when visible, else cpu), cuda, cpu, mps")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="weights dtype: auto = float16 on CUDA, float32 elsewhere; float16 loads the fp16 weight files"
    )

    @field_validator("model", "lora", mode="before")
    @classmethod
    def _split_lists(cls, value):
        return _split_commas(value)

    @field_validator("lora")
    @classmethod
    def _lora_specs_parse(cls, value: list[str]) -> list[str]:
        names = [LoraSpec.parse(text).name for text in value]  # raises naming the bad spec
        if len(set(names)) != len(names):
            raise ValueError(f"LoRA names must be unique, got {names}")
        return value

    @property
    def default_model(self) -> str:
        return self.model[0]


class ServerSettings(ModelSettings):
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=1, le=65535, description="port to listen on")
    max_batch_size: int = Field(4, ge=1, le=64, description="images coalesced into one pipeline call (1 = no batching)")
    batch_window_ms: float = Field(
        15.0, ge=0, le=1000, description="how long the first request of a batch waits for company"
    )
    queue_size: int = Field(32, ge=1, description="requests waiting or running before new ones get 429")
    stall_seconds: float = Field(
        600.0,
        ge=0,
        description="a pipeline call that makes no step progress this long marks /readyz wedged and fails its "
        "requests with 503; /healthz fails once it is stuck twice as long, so the pod restarts (0 = never)",
    )
    max_loaded_models: int = Field(
        1, ge=1, description="checkpoints kept in memory at once; past it the least recently used is unloaded"
    )
    auth_file: Path | None = Field(None, description="htpasswd file with bcrypt lines; enables HTTP Basic auth")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed by CORS (comma-separated)")
    max_width: int = Field(2048, ge=64, description="largest width accepted")
    max_height: int = Field(2048, ge=64, description="largest height accepted")
    max_steps: int = Field(150, ge=1, description="most denoising steps accepted")
    max_images_per_batch: int = Field(8, ge=1, description="largest batch_size (images per iteration) accepted")
    max_n_iter: int = Field(8, ge=1, description="largest n_iter accepted")
    max_prompt_length: int = Field(4000, ge=1, description="longest prompt / negative prompt, in characters")
    max_images_per_request: int = Field(
        16, ge=1, description="most images (batch_size x n_iter) one request makes; bounds its memory and response size"
    )
    max_pixels_per_request: int = Field(
        16 * 1024 * 1024,
        ge=64 * 64,
        description="most output pixels (images x width x height) one request makes; bounds its memory and response size",
    )
    max_init_images: int = Field(8, ge=1, description="most init_images one img2img request may send")
    drain_timeout_seconds: float = Field(
        270.0,
        gt=0,
        description="on SIGTERM, how long admitted work may run before the process exits anyway (keep it under "
        "the pod's termination grace period)",
    )
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="largest request body, in bytes")
    history_size: int = Field(
        64, ge=0, le=1024, description="recent images (save_images: true) kept in memory for StableStudio's history"
    )
    image_url_ttl_seconds: int = Field(
        3600, ge=10, description="how long an OpenAI `response_format: url` image stays downloadable"
    )
    image_url_capacity: int = Field(128, ge=1, description="most OpenAI url images kept at once (oldest go first)")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value):
        return _split_commas(value)

    @field_validator("auth_file")
    @classmethod
    def _auth_file_exists(cls, value: Path | None):
        if value is not None and not value.is_file():
            raise ValueError(f"auth file {value} does not exist")
        return value


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def is_list_setting(settings_class: type[BaseModel], field: str) -> bool:
    return getattr(settings_class.model_fields[field].annotation, "__origin__", None) is list


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")
