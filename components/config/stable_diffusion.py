"""`stable_diffusion`: replicas and autoscaling, the models (default, extra, LoRAs), the cache, serving."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, Field, field_validator, model_validator

from .base import DNS_SUBDOMAIN, LORA_NAME, ConfigModel, Quantity
from .errors import PathError
from .secret_refs import SecretInput, secret_shape

# Hugging Face repo id: "namespace/name" (or a bare legacy name); names of at most 96 chars.
_HF_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")
BUILTIN_MODELS = ("builtin:tiny", "builtin:tiny-sdxl")
_LOCAL_DIR = re.compile(r"^(/[\w.-]+)+/?$")


def _check_repo_id(value: str) -> str:
    if value in BUILTIN_MODELS or _HF_REPO_ID.match(value) and ".." not in value and "--" not in value:
        return value
    raise ValueError(
        f"'{value}' is not a Hugging Face repo id: expected 'owner/name' of letters, digits, "
        f"'-', '_', '.' (e.g. stabilityai/sd-turbo), or one of {', '.join(BUILTIN_MODELS)}"
    )


def _check_lora_source(value: str) -> str:
    """A LoRA is a Hub repo id or an absolute directory inside the pod (image or cache)."""
    if value.startswith("/"):
        if _LOCAL_DIR.match(value) and ".." not in value.split("/"):
            return value
        raise ValueError(f"'{value}' is not a clean absolute directory (letters, digits, '_', '-', '.', '/')")
    if value in BUILTIN_MODELS:
        raise ValueError(f"'{value}' is a checkpoint, not a LoRA adapter")
    return _check_repo_id(value)


def _check_revision(value: str) -> str:
    """What git refuses in a branch or tag name, beyond the characters the pattern allows. The
    server checks LoRA and upscaler revisions by git's rules too, so what passes here it accepts."""
    parts = value.split("/")
    if ".." in value or value.startswith("-") or value.endswith(".") or any(
        not part or part.startswith(".") or part.endswith(".lock") for part in parts
    ):
        raise ValueError(
            f"'{value}' is not a git branch, tag or commit: no '..', no leading '-', no empty '/' parts "
            "(leading, trailing or doubled '/'), no part starting with '.' or ending with '.lock', no trailing '.'"
        )
    return value


HfRepoId = Annotated[str, AfterValidator(_check_repo_id)]
Revision = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\w./-]+$"), AfterValidator(_check_revision)]


def _no_revision_for_a_directory(repo: str, revision: Optional[str]) -> None:
    if revision is not None and repo.startswith("/"):
        raise PathError(
            ("revision",),
            f"'{repo}' is a directory in the pod, not a Hugging Face repo: only a repo takes a revision",
        )


class Cache(ConfigModel):
    """The model cache volume."""

    size: Quantity = "50Gi"
    """Size of the model cache."""
    storage_class: Optional[Annotated[str, Field(pattern=DNS_SUBDOMAIN)]] = None
    """With `ReadWriteMany`: one PVC shared by every replica; otherwise a per-pod ephemeral claim of this class. Default: a
    per-pod ephemeral claim of the cluster's default class."""
    access_mode: Literal["ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"] = "ReadWriteMany"
    """Access mode of the claim."""

    @property
    def shared(self) -> bool:
        """One PVC shared by every replica: only with a storage class and RWX."""
        return self.storage_class is not None and self.access_mode == "ReadWriteMany"


_WARMUP_SIZE = re.compile(r"^(\d+)x(\d+)$")


def _check_warmup_size(value: str) -> str:
    text = value.strip().lower()
    if text in ("auto", "none", "native"):
        return text
    match = _WARMUP_SIZE.match(text)
    if not match:
        raise ValueError(f"{value!r} is not auto, none, native or WIDTHxHEIGHT (e.g. 512x512)")
    width, height = int(match[1]), int(match[2])
    if width % 8 or height % 8 or min(width, height) < 64:
        raise ValueError(f"{value!r}: width and height must be multiples of 8, at least 64")
    return text


class Lora(ConfigModel):
    """A LoRA adapter loaded onto the pipeline at start (`SD_LORA` entry `REPO[@REVISION]:NAME:WEIGHT`)."""

    repo: Annotated[str, AfterValidator(_check_lora_source)]
    """Hugging Face repo id (validated like `model_hf_name`) or an absolute directory in the pod (e.g. under `/models`)."""
    name: Optional[Annotated[str, Field(pattern=LORA_NAME, max_length=64)]] = None
    """The adapter's name in `<lora:NAME:WEIGHT>` prompt tags: letters, digits, `.`, `_`, `-` (at most 64); unique. Default: the
    repo's last part."""
    weight: float = 1.0
    """The adapter's weight where a prompt tag gives none: a finite number (a numeric string such as `"0.8"` from `pulumi config
    set --path` is accepted; booleans are not)."""
    revision: Optional[Revision] = None
    """Pinned revision (branch, tag or commit) of the Hugging Face repo, fetched by the init container and loaded by the
    server; not with a directory `repo`. Default: the repo's default branch at the time each pod starts."""

    @model_validator(mode="after")
    def _revision_needs_a_repo(self) -> "Lora":
        _no_revision_for_a_directory(self.repo, self.revision)
        return self

    @field_validator("weight", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"weight must be a number, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"weight must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"weight must be a finite number, got {value!r}")
        return number

    @property
    def adapter_name(self) -> str:
        if self.name:
            return self.name
        tail = self.repo.rstrip("/").rsplit("/", 1)[-1]
        return re.sub(r"[^A-Za-z0-9._-]", "-", tail)[:64]


class ExtraModel(ConfigModel):
    """Another checkpoint the server can switch to (loaded on first use)."""

    model_hf_name: HfRepoId
    """Hugging Face repo id (owner/name); must differ from the default model and from each other."""
    revision: Optional[Revision] = None
    """Pinned revision (branch, tag or commit)."""


# Names the server keeps for its resampling upscalers (no weights); a learned one must differ.
_RESAMPLING_UPSCALERS = ("None", "Lanczos", "Nearest", "Bicubic", "Bilinear")


class Upscaler(ConfigModel):
    """A learned (ESRGAN-family) upscaler for Extras and the hires fix (`SD_UPSCALER` entry `REPO_OR_DIR[@REVISION]:NAME`)."""

    repo: Annotated[str, AfterValidator(_check_lora_source)]
    """Hugging Face repo id holding one `.safetensors` or `.pth` ESRGAN/RRDBNet network at its top level (the one file
    fetched; a `.safetensors` one rather than a `.pth`), or an absolute directory in the pod (e.g. under `/models`)."""
    name: Optional[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._+()-]*$", max_length=64)]] = None
    """The name clients pick it by (`upscaler_1`, `hr_upscaler`): letters, digits, space, `.`, `_`, `+`, `-`, `()`;
    unique, and none of the resampling names (None, Lanczos, Nearest, Bicubic, Bilinear). Default: the repo's last part."""
    revision: Optional[Revision] = None
    """Pinned revision (branch, tag or commit) of the Hugging Face repo, fetched by the init container and loaded by the
    server; not with a directory `repo`. Default: the repo's default branch at the time each pod starts."""

    @model_validator(mode="after")
    def _revision_needs_a_repo(self) -> "Upscaler":
        _no_revision_for_a_directory(self.repo, self.revision)
        return self

    @property
    def upscaler_name(self) -> str:
        return self.name or self.repo.rstrip("/").rsplit("/", 1)[-1]


class HuggingFaceModel(ConfigModel):
    """The default checkpoint, its token and cache, and the LoRA adapters."""

    model_hf_name: HfRepoId
    """Hugging Face repo id `owner/name`, or `builtin:tiny` / `builtin:tiny-sdxl`."""
    hf_token: Optional[SecretInput] = None
    """Hugging Face token: `{key: NAME}` (Pulumi secret config NAME), `{secret_name, secret_key}` (an existing Secret in the
    namespace), or a string (stored as a secret; from another language, use the component's `hfToken` input)."""
    revision: Optional[Revision] = None
    """Pinned revision (branch, tag or commit)."""
    cache: Cache = Cache()
    """The model cache volume."""
    loras: list[Lora] = []
    """LoRA adapters loaded onto the pipeline at start, each `{repo, name, weight, revision}`."""

    @model_validator(mode="after")
    def _unique_lora_names(self) -> "HuggingFaceModel":
        seen: set[str] = set()
        for index, lora in enumerate(self.loras):
            if lora.adapter_name in seen:
                raise PathError(
                    ("loras", index, "name"),
                    f"adapter name '{lora.adapter_name}' is used twice; give each LoRA its own name",
                )
            seen.add(lora.adapter_name)
        return self

    @field_validator("hf_token", mode="before")
    @classmethod
    def _token(cls, value: Any) -> Any:
        return None if value is None else secret_shape(value, "hf_token")


class Autoscaling(ConfigModel):
    """KEDA autoscaling on the queue depth."""

    min_replicas: Annotated[int, Field(ge=0)] = 0
    """Minimum replicas; 0 allowed (scale to zero)."""
    max_replicas: Annotated[int, Field(ge=1)] = 2
    """Maximum replicas (at least `min_replicas`)."""
    target_queue_depth: Annotated[int, Field(ge=1)] = 4
    """Queued requests per replica KEDA aims at."""
    prometheus_url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")]
    """Prometheus that KEDA queries, `http(s)://host[:port]`; it must scrape the pods (see `monitoring`)."""
    activation_query: Optional[Annotated[str, Field(min_length=1)]] = None
    """Extra PromQL trigger that wakes the Deployment from zero replicas (with no pods there is no queue-depth series). Default:
    the ingress controller's request rate."""
    polling_interval: Annotated[int, Field(ge=5)] = 15
    """Seconds between KEDA's queries."""
    cooldown_period: Annotated[int, Field(ge=30)] = 300
    """Seconds without load before scaling to zero."""

    @model_validator(mode="after")
    def _bounds(self) -> "Autoscaling":
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})"
            )
        return self


class StableDiffusionSettings(ConfigModel):
    """Replicas, models and serving settings."""

    replica_count: Annotated[int, Field(ge=1)] = 1
    """Fixed replicas; ignored when `autoscaling` is set."""
    autoscaling: Optional[Autoscaling] = None
    """KEDA ScaledObject settings; off when absent."""
    hugging_face_model: HuggingFaceModel
    """The default model."""
    extra_models: list[ExtraModel] = []
    """More checkpoints the server can switch to (A1111 `sd_model_checkpoint`, OpenAI `model`), each `{model_hf_name, revision}`,
    loaded on first use."""
    upscalers: list[Upscaler] = []
    """Learned upscalers offered by `/sdapi/v1/upscalers` besides the resampling ones, each `{repo, name, revision}`;
    prefetched by the init container like the models, loaded on first use."""
    max_loaded_models: Annotated[int, Field(ge=1, le=16)] = 1
    """Checkpoints kept in memory at once, the least recently used evicted (`SD_MAX_LOADED_MODELS`)."""
    max_batch_size: Annotated[int, Field(ge=1, le=64)] = 4
    """Most images in one pipeline call (`SD_MAX_BATCH_SIZE`)."""
    queue_size: Annotated[int, Field(ge=1)] = 32
    """Requests waiting or running per replica (`SD_QUEUE_SIZE`)."""
    compile: Literal["auto", "off", "max"] = "auto"
    """The fast path (`SD_COMPILE`): `auto` compiles the UNet and VAE decoder with CUDA graphs on a GPU and warms
    every batch size before ready (eager on a CPU), `max` adds max-autotune (a slower first start), `off` serves
    eager; compiled code is cached on the model cache volume."""
    precompile: Literal["auto", "off"] = "auto"
    """The compiled forward of each warmed shape is saved in the compile cache and loaded at the next start instead
    of traced again (`SD_PRECOMPILE`): `auto` wherever the model compiles with fullgraph and static shapes, `off` traces
    every warmed shape at every start (an escape hatch: the API is experimental in PyTorch)."""
    warmup_sizes: list[Annotated[str, AfterValidator(_check_warmup_size)]] = ["auto"]
    """Image sizes compiled and run at every batch size before a replica is ready (`SD_WARMUP_SIZES`): `WIDTHxHEIGHT`
    (multiples of 8, at least 64) or `native`; `auto` alone: the model's native size when compiled; `none` alone: no
    warm-up, each size compiles on its first request. Once warmed, other sizes run eager (never a compile while
    serving): list every size your clients ask for."""
    cors_origins: list[Annotated[str, Field(min_length=1)]] = []
    """Origins allowed to call the API from a browser (`SD_CORS_ORIGINS`); StableStudio's is added when it is enabled."""
    termination_grace_period_seconds: Annotated[int, Field(ge=30, le=3600)] = 300
    """Time to finish in-flight generations on SIGTERM."""
    startup_failure_threshold: Annotated[int, Field(ge=6, le=1000)] = 90
    """Startup probe budget, x 10 s: big models load slowly."""

    @field_validator("warmup_sizes")
    @classmethod
    def _keywords_alone(cls, sizes: list[str]) -> list[str]:
        if not sizes:
            raise ValueError("list at least one size, or ['none'] for no warm-up")
        for keyword in ("auto", "none"):
            if keyword in sizes and len(sizes) > 1:
                raise ValueError(f"'{keyword}' stands alone; got {', '.join(sizes)}")
        return sizes

    @model_validator(mode="after")
    def _distinct_upscalers(self) -> "StableDiffusionSettings":
        seen: set[str] = set()
        for index, upscaler in enumerate(self.upscalers):
            name = upscaler.upscaler_name
            if name in seen or name in _RESAMPLING_UPSCALERS:
                taken = "is used twice" if name in seen else "is a resampling upscaler's name"
                raise PathError(("upscalers", index, "name"), f"upscaler name '{name}' {taken}; give it its own name")
            seen.add(name)
        return self

    @model_validator(mode="after")
    def _distinct_models(self) -> "StableDiffusionSettings":
        seen = {self.hugging_face_model.model_hf_name}
        for index, extra in enumerate(self.extra_models):
            if extra.model_hf_name in seen:
                raise PathError(
                    ("extra_models", index, "model_hf_name"),
                    f"'{extra.model_hf_name}' is already listed (the default model is "
                    "hugging_face_model.model_hf_name)",
                )
            seen.add(extra.model_hf_name)
        return self

    @property
    def max_replicas(self) -> int:
        return self.autoscaling.max_replicas if self.autoscaling else self.replica_count
