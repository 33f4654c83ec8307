"""Server settings: one pydantic model that is the single source of every CLI flag and
its `SD_*` environment variable (the Kubernetes Deployment configures the server through
the environment; a developer through flags)."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .engine.lora import LoraSpec
from .engine.upscalers import UpscalerSpec
from .engine.warmup import parse_warmup_sizes

ENV_PREFIX = "SD_"
# A DNS name: dot-separated labels of letters, digits and inner hyphens (a trailing dot allowed).
_DNS_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"^(?=.{{1,253}}$){_DNS_LABEL}(\.{_DNS_LABEL})*\.?$")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stable-diffusion-k8s"


def _specs_with_unique_names(value: list[str], spec_class: type[LoraSpec] | type[UpscalerSpec], what: str) -> list[str]:
    """`value` when every entry parses as a `spec_class` (`REPO[@REVISION]...`) and their names are unique."""
    first_with: dict[str, str] = {}
    for text in value:
        name = spec_class.parse(text).name  # raises naming the bad entry
        if name in first_with:
            raise ValueError(f"{what} names must be unique: {first_with[name]!r} and {text!r} are both named {name!r}")
        first_with[name] = text
    return value


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
        description="LoRA adapter REPO_OR_DIR[@REVISION][:NAME][:WEIGHT] (REVISION: a Hub branch, tag or commit), "
        "activated per request by <lora:NAME:WEIGHT>; repeatable",
    )
    upscaler: list[str] = Field(
        default_factory=list,
        description="learned upscaler (ESRGAN family) REPO_OR_DIR[@REVISION][:NAME] or builtin:tiny-upscaler, offered by "
        "/sdapi/v1/upscalers for extras and hires fix; repeatable",
    )
    cache_dir: Path = Field(default_factory=default_cache_dir, description="model cache directory")
    # `download` reads these too: the dtype decides which weight files (fp16 variant or
    # full precision) are fetched, so the init container fetches what `serve` will load.
    device: str = Field("auto", description="torch device: auto (cuda when visible, else cpu), cuda, cpu, mps")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="weights dtype: auto = float16 on CUDA, float32 elsewhere; float16 loads the fp16 weight files"
    )

    @field_validator("model", "lora", "upscaler", mode="before")
    @classmethod
    def _split_lists(cls, value):
        return _split_commas(value)

    @field_validator("lora")
    @classmethod
    def _lora_specs_parse(cls, value: list[str]) -> list[str]:
        return _specs_with_unique_names(value, LoraSpec, "LoRA")

    @field_validator("upscaler")
    @classmethod
    def _upscaler_specs_parse(cls, value: list[str]) -> list[str]:
        return _specs_with_unique_names(value, UpscalerSpec, "upscaler")

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
    compile: Literal["off", "auto", "max"] = Field(
        "auto",
        description="fast path: auto = on CUDA fused QKV, channels_last, UNet and VAE decoder compiled with CUDA "
        "graphs, batches padded to buckets (on a CPU: off); max = the same with max-autotune (any device); off = eager",
    )
    precompile: Literal["auto", "off"] = Field(
        "auto",
        description="auto = each warmed shape's compiled forward is saved in the compile cache and loaded at the next "
        "start instead of traced again (when compiled with fullgraph and static shapes); off = traced at every start",
    )
    warmup_sizes: list[str] = Field(
        default_factory=lambda: ["auto"],
        description="sizes (WIDTHxHEIGHT or native) run once at every batch bucket before /readyz is ready; "
        "auto = the native size when compiled, none = no warm-up",
    )
    max_loaded_models: int = Field(
        1, ge=1, description="checkpoints kept in memory at once; past it the least recently used is unloaded"
    )
    auth_file: Path | None = Field(None, description="htpasswd file with bcrypt lines; enables HTTP Basic auth")
    cors_origins: list[str] = Field(
        default_factory=list,
        description="origins allowed by CORS (comma-separated); '*' allows every origin but never with credentials "
        "(browsers then send no cached Basic auth), a list of origins allows credentials",
    )
    public_url: str | None = Field(
        None,
        description="base URL clients reach this server at (e.g. https://sd.example.com); OpenAI response_format "
        "url links start with it. Unset: the address the connection arrived on, never the client's Host header",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or CIDR networks of reverse proxies whose X-Forwarded-For/-Proto are believed "
        "(the client address in the access log); empty = none, the log shows the TCP peer",
    )
    advertise_address: str | None = Field(
        None,
        description="this replica's own IP address (in Kubernetes the pod IP); with --peers, OpenAI url image ids "
        "name it, so another replica can fetch the image from this one",
    )
    peers: str | None = Field(
        None,
        description="DNS name that resolves to every replica's IP (a headless Service); with --advertise-address, "
        "a url image link made by another replica is fetched from it (only from an address this name resolves to), "
        "StableStudio's history lists every replica's images, and a checkpoint switch (POST /sdapi/v1/options) "
        "switches every replica",
    )
    peer_switch_timeout_seconds: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="with --peers, how long POST /sdapi/v1/options with sd_model_checkpoint waits for the other "
        "replicas to switch too (each may have to load the checkpoint); past it the answer is given anyway",
    )
    peer_token_file: Path | None = Field(
        None,
        description="file holding a token every replica shares (the component generates one); with --auth-file "
        "and --peers, a starting replica reads the other replicas' current checkpoint with it. It opens GET "
        "/sdapi/v1/options with x-sd-local-only: 1 and nothing else; a checkpoint switch forwarded to the other "
        "replicas carries it to vouch for the switch's stamp",
    )
    max_connections: int = Field(
        1024,
        ge=8,
        description="open HTTP connections at most (also kept below the open-file limit); past it the connection "
        "that has waited longest for a request is closed, or the new one gets 503 when every one is busy",
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="a request's headers must arrive within this long, or the connection is closed (408)"
    )
    body_timeout_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="a request's body must arrive within this long after its headers, or the connection is closed (408)",
    )
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

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_origins(cls, value):
        return _split_commas(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
        return value

    @field_validator("advertise_address")
    @classmethod
    def _advertise_address_is_an_ip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise ValueError(f"must be this replica's IP address (e.g. the pod IP), got {value!r}") from None

    @field_validator("peers")
    @classmethod
    def _peers_is_a_dns_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _DNS_NAME.match(value.strip()):
            raise ValueError(
                f"must be a DNS name that resolves to every replica (a headless Service's, "
                f"e.g. sd-peers.default.svc.cluster.local), got {value!r}"
            )
        return value.strip()

    @model_validator(mode="after")
    def _peers_need_an_address(self) -> ServerSettings:
        if (self.peers is None) != (self.advertise_address is None):
            raise ValueError(
                "--peers / SD_PEERS and --advertise-address / SD_ADVERTISE_ADDRESS go together: links name their "
                "replica by its advertised address, and are fetched from the replicas --peers resolves to"
            )
        return self

    @field_validator("public_url")
    @classmethod
    def _public_url_is_absolute(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urlsplit(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query or parsed.fragment:
            raise ValueError(f"must be an http(s) URL like https://sd.example.com[/prefix], got {value!r}")
        return value.rstrip("/")

    @field_validator("warmup_sizes", mode="before")
    @classmethod
    def _split_sizes(cls, value):
        return _split_commas(value)

    @field_validator("warmup_sizes")
    @classmethod
    def _sizes_parse(cls, value: list[str]) -> list[str]:
        return parse_warmup_sizes(value)  # raises naming the bad entry

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
