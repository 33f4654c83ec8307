"""`AppConfig`, the whole `stable-diffusion:app`, with the rules that span its parts, and
`parse_app_config`, the only entry point."""

from __future__ import annotations

from typing import Annotated, Any, Optional

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from ..cloud_rules import (
    GkeMachineMismatch,
    UnknownMachineType,
    gke_accelerator_count,
    gke_capacity_problem,
    gke_machine,
)
from ..presets import BUILTIN_PRESETS, Preset
from .base import CONFIG_KEY, ConfigModel, DnsLabel
from .errors import AppConfigError, PathError, raise_config_error
from .images import NO_PULLABLE_IMAGE, BuiltImage, Image, check_pullable, image_shape, no_host_message, registry_host
from .ingress import IngressHttp, NetworkPolicySettings
from .monitoring import Monitoring
from .node_pools import ExistingNodes, NodePool
from .stable_diffusion import StableDiffusionSettings
from .stablestudio import StableStudio


class PresetRef(ConfigModel):
    """The GPU preset each replica gets."""

    name: Annotated[str, Field(min_length=1)]
    """Per-replica preset: a built-in name (cpu-small, gpu-t4-x1, gpu-l4-x1, gpu-a10g-x1, gpu-l40s-x1, gpu-a100-x1, gpu-h100-x1, gpu-h200-x1) or a key of `presets`."""


class AppConfig(ConfigModel):
    """The app inputs (the `stable-diffusion:app` config); see docs/component.md."""

    model_config = ConfigDict(title="App")

    preset: PresetRef
    """The GPU preset per replica."""
    presets: dict[DnsLabel, Preset] = {}
    """Custom presets by name; one with a built-in name replaces the built-in one."""
    namespace: DnsLabel = "stable-diffusion"
    """Namespace, created and labelled Pod Security `restricted` (enforce, audit, warn)."""
    ingress_http: IngressHttp = IngressHttp()
    """The external endpoint."""
    stable_diffusion: StableDiffusionSettings
    """Replicas, models and serving."""
    node_pool: NodePool = ExistingNodes()
    """GPU nodes: found (`existing`) or made (`karpenter`, `gke`). `node_pool: karpenter` is short for `{mode: karpenter}`."""
    image: Image = BuiltImage()
    """The inference image: prebuilt, or `inference/` built and pushed to a registry or loaded into a local cluster."""
    network_policy: NetworkPolicySettings = NetworkPolicySettings()
    """NetworkPolicy settings."""
    stablestudio: StableStudio = StableStudio()
    """StableStudio beside the API."""
    monitoring: Monitoring = Monitoring()
    """Prometheus scraping: its namespace, a PodMonitor."""

    @model_validator(mode="after")
    def _stablestudio_needs_host(self) -> "AppConfig":
        if self.stablestudio.enabled and self.ingress_http.host is None:
            raise PathError(
                ("ingress_http", "host"),
                "required when stablestudio.enabled is true (StableStudio is served on the "
                "API's host and its origin is added to the API's CORS origins)",
            )
        return self

    @model_validator(mode="after")
    def _images_reach_the_nodes(self) -> "AppConfig":
        """Refuse an image the cluster's nodes could not pull (ErrImagePull after a long wait)."""
        mode = self.node_pool.mode
        # Karpenter and GKE pools make cloud VMs: they see no image of this machine.
        remote = mode in ("karpenter", "gke")
        image = self.image
        if isinstance(image, BuiltImage):
            build = image.build
            if build.registry is None and build.local_cluster is None:
                raise PathError(("image",), NO_PULLABLE_IMAGE)
            if build.local_cluster is not None and remote:
                raise PathError(
                    ("image", "build", "local_cluster"),
                    f"node_pool.mode {mode} runs the pods on cloud nodes, which cannot see an image "
                    f"loaded into a local {build.local_cluster} cluster: set image.build.registry "
                    "(push it where the nodes pull from) or image.repository (a prebuilt image)",
                )
            if build.registry is not None and remote and registry_host(build.repository) is None:
                raise PathError(
                    ("image", "build", "registry"),
                    no_host_message(build.registry, mode, "e.g. ghcr.io/acme"),
                )
        else:
            check_pullable(image.repository, ("image", "repository"), mode, remote, local_build_hint=True)
        studio = self.stablestudio
        if studio.enabled and studio.image is not None:
            check_pullable(studio.image.repository, ("stablestudio", "image", "repository"), mode, remote)
        return self

    @property
    def external_origin(self) -> Optional[str]:
        """`https://host` (TLS) or `http://host`; None without a configured host."""
        http = self.ingress_http
        if http.host is None:
            return None
        return f"{'https' if http.tls else 'http'}://{http.host}"

    @property
    def cors_origins(self) -> list[str]:
        """The API's CORS origins: the user's, plus StableStudio's when it is deployed."""
        origins = list(self.stable_diffusion.cors_origins)
        if self.stablestudio.enabled and self.external_origin not in origins:
            origins.append(self.external_origin)
        return origins

    @field_validator("node_pool", mode="before")
    @classmethod
    def _mode_string(cls, value: Any) -> Any:
        # `node_pool: karpenter` is shorthand for `{mode: karpenter}` with the defaults.
        if isinstance(value, str):
            return {"mode": value}
        return value

    @field_validator("image", mode="before")
    @classmethod
    def _image_shape(cls, value: Any) -> Any:
        return image_shape(value)

    @property
    def catalogue(self) -> dict[str, Preset]:
        return {**BUILTIN_PRESETS, **self.presets}

    @property
    def resolved_preset(self) -> Preset:
        return self.catalogue[self.preset.name]

    @model_validator(mode="after")
    def _preset(self) -> "AppConfig":
        catalogue = self.catalogue
        name = self.preset.name
        if name not in catalogue:
            raise PathError(
                ("preset", "name"),
                f"unknown preset '{name}'; allowed: {', '.join(sorted(catalogue))} "
                "(or define it under presets:)",
            )
        preset = catalogue[name]
        mode = self.node_pool.mode
        if mode == "gke" and preset.gpu_count and not preset.gke_accelerator:
            usable = sorted(n for n, p in catalogue.items() if not p.gpu_count or p.gke_accelerator)
            raise PathError(
                ("preset", "name"),
                f"preset '{name}' has no GKE accelerator (node_pool.mode gke); "
                f"allowed with gke: {', '.join(usable)}",
            )
        if mode == "gke" and preset.gpu_count:
            self._check_gke_machine(name, preset)
        if mode == "karpenter" and preset.gpu_count and not preset.karpenter_gpu_name:
            usable = sorted(n for n, p in catalogue.items() if not p.gpu_count or p.karpenter_gpu_name)
            raise PathError(
                ("preset", "name"),
                f"preset '{name}' has no Karpenter GPU name (node_pool.mode karpenter); "
                f"allowed with karpenter: {', '.join(usable)}",
            )
        if (
            mode == "existing"
            and preset.gpu_count
            and not preset.gpu_product
            and not self.node_pool.node_selector
        ):
            raise PathError(
                ("node_pool", "node_selector"),
                f"preset '{name}' has no gpu_product label; set node_pool.node_selector",
            )
        return self

    def _check_gke_machine(self, name: str, preset: Preset) -> None:
        """The machine type must carry the preset's GPU, and its capacity must be obtainable."""
        pool = self.node_pool
        machine_type = pool.machine_type or preset.gke_machine_type
        origin = "" if pool.machine_type else f" (preset '{name}' default gke_machine_type)"
        try:
            gke_accelerator_count(machine_type, preset.gke_accelerator, preset.gpu_count)
            machine = gke_machine(machine_type)
        except (GkeMachineMismatch, UnknownMachineType) as error:
            raise PathError(("node_pool", "machine_type"), f"{error}{origin}") from None
        problem = gke_capacity_problem(machine, pool.spot, pool.flex_start, pool.reservation)
        if problem:
            raise PathError(("node_pool", "spot"), problem)


def parse_app_config(raw: Any) -> AppConfig:
    """Validate the structured config; raise `AppConfigError` naming every bad path.

    The whole tree is validated before any resource is declared; each line of the error
    names the config path (`stable-diffusion:app.preset.name`) and, where there is a
    closed set, the allowed values.
    """
    if isinstance(raw, AppConfig):
        return raw
    if raw is None:
        raise AppConfigError(f"{CONFIG_KEY}: missing (set it in Pulumi.<stack>.yaml)")
    if not isinstance(raw, dict):
        raise AppConfigError(f"{CONFIG_KEY}: must be an object, got {type(raw).__name__}")
    try:
        return AppConfig.model_validate(raw)
    except ValidationError as error:
        raise_config_error(AppConfig, error)
