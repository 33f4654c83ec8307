"""The app inputs: the structured stack config `stable-diffusion:app`, as pydantic models.

`parse_app_config` is the only entry point. It validates the whole tree before any
resource is declared and turns pydantic's errors into one `AppConfigError` whose lines
name the config path (`stable-diffusion:app.preset.name`) and, where there is a closed
set, the allowed values. Every model forbids unknown keys, so a typo is an error rather
than a silently ignored setting.

Cross-field rules that need the preset catalogue (unknown preset, a preset that a
node-pool mode cannot place) live here too, so nothing downstream has to re-check them.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Optional, Union, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from .cloud_rules import (
    GkeMachineMismatch,
    UnknownMachineType,
    gke_accelerator_count,
    gke_capacity_problem,
    gke_machine,
)
from .presets import BUILTIN_PRESETS, Preset

CONFIG_KEY = "stable-diffusion:app"

# Kubernetes quantities (cpu "500m", memory "24Gi", storage "50Gi").
_QUANTITY = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Hugging Face repo id: "namespace/name" (or a bare legacy name); names of at most 96 chars.
_HF_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")
BUILTIN_MODELS = ("builtin:tiny", "builtin:tiny-sdxl")
_LORA_NAME = r"^[A-Za-z0-9._-]+$"
_LOCAL_DIR = re.compile(r"^(/[\w.-]+)+/?$")

Quantity = Annotated[str, Field(pattern=_QUANTITY)]
DnsLabel = Annotated[str, Field(pattern=_DNS_LABEL, max_length=63)]


class AppConfigError(ValueError):
    """Invalid `stable-diffusion:app` config; the message lists every problem with its path."""


class _Model(BaseModel):
    # `pulumi config set --path app.image.tag 2` stores an all-digit value as a number; a
    # text field (tag, revision, namespace, ...) takes it as the text the user typed.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


# --- secrets -----------------------------------------------------------------------------


class ConfigSecretRef(_Model):
    """`{key: NAME}`: the value of the Pulumi secret config key NAME
    (`pulumi config set --secret NAME ...`; `ns:NAME` for another namespace)."""

    key: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")]


class KubernetesSecretRef(_Model):
    """`{secret_name, secret_key}`: a key of an existing Secret in the app's namespace."""

    secret_name: Annotated[str, Field(pattern=_DNS_SUBDOMAIN, max_length=253)]
    secret_key: Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)]


SecretInput = Union[ConfigSecretRef, KubernetesSecretRef, str]


def _secret_shape(value: Any, what: str) -> Any:
    """Give a clear error for a dict that is neither secret reference shape."""
    if isinstance(value, dict):
        keys = set(value)
        if keys == {"key"}:
            return ConfigSecretRef.model_validate(value)
        if keys == {"secret_name", "secret_key"}:
            return KubernetesSecretRef.model_validate(value)
        raise ValueError(
            f"{what} must be a string, {{key: NAME}} (Pulumi secret config) or "
            f"{{secret_name, secret_key}} (existing Kubernetes Secret); got keys {sorted(keys)}"
        )
    if isinstance(value, str) and not value:
        raise ValueError(f"{what} must not be empty")
    return value


# --- stable_diffusion --------------------------------------------------------------------


class Cache(_Model):
    size: Quantity = "50Gi"
    storage_class: Optional[Annotated[str, Field(pattern=_DNS_SUBDOMAIN)]] = None
    access_mode: Literal["ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"] = "ReadWriteMany"

    @property
    def shared(self) -> bool:
        """One PVC shared by every replica: only with a storage class and RWX."""
        return self.storage_class is not None and self.access_mode == "ReadWriteMany"


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


HfRepoId = Annotated[str, AfterValidator(_check_repo_id)]
Revision = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\w./-]+$")]


class Lora(_Model):
    """A LoRA adapter loaded onto the pipeline at start (`SD_LORA` entry `REPO:NAME:WEIGHT`)."""

    repo: Annotated[str, AfterValidator(_check_lora_source)]
    # The adapter's name in `<lora:NAME:WEIGHT>` prompt tags; default: the repo's last part.
    name: Optional[Annotated[str, Field(pattern=_LORA_NAME, max_length=64)]] = None
    weight: float = 1.0

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


class ExtraModel(_Model):
    """Another checkpoint the server can switch to (loaded on first use)."""

    model_hf_name: HfRepoId
    revision: Optional[Revision] = None


class HuggingFaceModel(_Model):
    model_hf_name: HfRepoId
    hf_token: Optional[SecretInput] = None
    revision: Optional[Revision] = None
    cache: Cache = Cache()
    loras: list[Lora] = []

    @model_validator(mode="after")
    def _unique_lora_names(self) -> "HuggingFaceModel":
        seen: set[str] = set()
        for index, lora in enumerate(self.loras):
            if lora.adapter_name in seen:
                raise _PathError(
                    ("stable_diffusion", "hugging_face_model", "loras", index, "name"),
                    f"adapter name '{lora.adapter_name}' is used twice; give each LoRA its own name",
                )
            seen.add(lora.adapter_name)
        return self

    @field_validator("hf_token", mode="before")
    @classmethod
    def _token(cls, value: Any) -> Any:
        return None if value is None else _secret_shape(value, "hf_token")


class Autoscaling(_Model):
    min_replicas: Annotated[int, Field(ge=0)] = 0
    max_replicas: Annotated[int, Field(ge=1)] = 2
    target_queue_depth: Annotated[int, Field(ge=1)] = 4
    prometheus_url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")]
    # Extra PromQL trigger that wakes the Deployment from zero replicas (with no pods there
    # is no queue-depth series). Defaults to the ingress controller's request rate.
    activation_query: Optional[Annotated[str, Field(min_length=1)]] = None
    polling_interval: Annotated[int, Field(ge=5)] = 15
    cooldown_period: Annotated[int, Field(ge=30)] = 300

    @model_validator(mode="after")
    def _bounds(self) -> "Autoscaling":
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})"
            )
        return self


class StableDiffusionSettings(_Model):
    replica_count: Annotated[int, Field(ge=1)] = 1
    autoscaling: Optional[Autoscaling] = None
    hugging_face_model: HuggingFaceModel
    # More checkpoints the server can switch to (A1111 `sd_model_checkpoint`, OpenAI `model`).
    extra_models: list[ExtraModel] = []
    # Checkpoints kept in memory at once (least recently used evicted): SD_MAX_LOADED_MODELS.
    max_loaded_models: Annotated[int, Field(ge=1, le=16)] = 1
    max_batch_size: Annotated[int, Field(ge=1, le=64)] = 4
    queue_size: Annotated[int, Field(ge=1)] = 32
    cors_origins: list[Annotated[str, Field(min_length=1)]] = []
    termination_grace_period_seconds: Annotated[int, Field(ge=30, le=3600)] = 300
    # Startup probe budget: periodSeconds 10 x this. Big models load slowly.
    startup_failure_threshold: Annotated[int, Field(ge=6, le=1000)] = 90

    @model_validator(mode="after")
    def _distinct_models(self) -> "StableDiffusionSettings":
        seen = {self.hugging_face_model.model_hf_name}
        for index, extra in enumerate(self.extra_models):
            if extra.model_hf_name in seen:
                raise _PathError(
                    ("stable_diffusion", "extra_models", index, "model_hf_name"),
                    f"'{extra.model_hf_name}' is already listed (the default model is "
                    "hugging_face_model.model_hf_name)",
                )
            seen.add(extra.model_hf_name)
        return self

    @property
    def max_replicas(self) -> int:
        return self.autoscaling.max_replicas if self.autoscaling else self.replica_count

    @property
    def can_have_several_replicas(self) -> bool:
        return self.max_replicas > 1


# --- ingress -----------------------------------------------------------------------------


class TlsSecret(_Model):
    secret_name: Annotated[str, Field(pattern=_DNS_SUBDOMAIN, max_length=253)]


class TlsClusterIssuer(_Model):
    cluster_issuer: Annotated[str, Field(min_length=1, pattern=_DNS_SUBDOMAIN)]


def _tls_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "issuer" if "cluster_issuer" in value else "secret"
    return "issuer" if isinstance(value, TlsClusterIssuer) else "secret"


_DEFAULT_CONTROLLER_NAMESPACE = {"traefik": "traefik", "nginx": "ingress-nginx"}


class IngressHttp(_Model):
    auth: bool = True
    username: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")] = "admin"
    host: Optional[Annotated[str, Field(pattern=_DNS_SUBDOMAIN, max_length=253)]] = None
    class_name: Literal["traefik", "nginx"] = "traefik"
    tls: Optional[
        Annotated[
            Union[Annotated[TlsSecret, Tag("secret")], Annotated[TlsClusterIssuer, Tag("issuer")]],
            Discriminator(_tls_kind),
        ]
    ] = None
    # Namespace of the ingress controller's pods (the NetworkPolicy lets them in).
    controller_namespace: Optional[DnsLabel] = None
    max_body_size: Annotated[str, Field(pattern=r"^[0-9]+[kKmMgG]?$")] = "64m"
    timeout_seconds: Annotated[int, Field(ge=30, le=3600)] = 600
    annotations: dict[str, str] = {}

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_shape(cls, value: Any) -> Any:
        if isinstance(value, dict) and set(value) not in ({"secret_name"}, {"cluster_issuer"}):
            raise ValueError(
                "tls must be {secret_name: NAME} (an existing TLS Secret) or "
                f"{{cluster_issuer: NAME}} (cert-manager); got keys {sorted(value)}"
            )
        return value

    @model_validator(mode="after")
    def _tls_needs_host(self) -> "IngressHttp":
        if self.tls is not None and self.host is None:
            raise ValueError("tls needs ingress_http.host (the certificate's hostname)")
        return self

    @property
    def ingress_controller_namespace(self) -> str:
        return self.controller_namespace or _DEFAULT_CONTROLLER_NAMESPACE[self.class_name]


class NetworkPolicySettings(_Model):
    enabled: bool = True
    # In-cluster namespaces whose pods may call the API (besides the ingress controller's).
    allowed_namespaces: list[DnsLabel] = []


# --- node pools --------------------------------------------------------------------------


class ExistingNodes(_Model):
    mode: Literal["existing"] = "existing"
    # Override the preset's selector (e.g. a cluster without GPU Feature Discovery).
    node_selector: Optional[dict[str, str]] = None


class KarpenterNodePool(_Model):
    mode: Literal["karpenter"]
    node_class: Annotated[str, Field(pattern=_DNS_SUBDOMAIN)] = "default"
    node_class_kind: str = "EC2NodeClass"
    node_class_group: str = "karpenter.k8s.aws"
    capacity_types: list[Literal["on-demand", "spot", "reserved"]] = ["on-demand"]
    consolidate_after: Annotated[str, Field(pattern=r"^([0-9]+(s|m|h))+$|^Never$")] = "10m"
    expire_after: Annotated[str, Field(pattern=r"^([0-9]+(s|m|h))+$|^Never$")] = "720h"


class GkeNodePool(_Model):
    mode: Literal["gke"]
    cluster: Annotated[str, Field(min_length=1)]
    location: Annotated[str, Field(min_length=1)]
    project: Optional[str] = None
    machine_type: Optional[str] = None  # default: the preset's
    spot: bool = False
    min_node_count: Annotated[int, Field(ge=0)] = 0
    max_node_count: Optional[Annotated[int, Field(ge=1)]] = None  # default: max replicas + 1
    disk_size_gb: Annotated[int, Field(ge=50)] = 200
    gpu_driver_version: Literal["DEFAULT", "LATEST", "INSTALLATION_DISABLED"] = "LATEST"
    # Flex-start (Dynamic Workload Scheduler) nodes: GPUs that on-demand cannot get; each
    # node runs at most 7 days, then is replaced.
    flex_start: bool = False
    # A specific Compute Engine reservation to take the nodes from (by name). Without it
    # an on-demand pool consumes any matching reservation automatically.
    reservation: Optional[Annotated[str, Field(pattern=_DNS_LABEL, max_length=63)]] = None

    @model_validator(mode="after")
    def _one_consumption_option(self) -> "GkeNodePool":
        chosen = [name for name, on in (("spot", self.spot), ("flex_start", self.flex_start),
                                        ("reservation", self.reservation is not None)) if on]
        if len(chosen) > 1:
            raise ValueError(
                f"{' and '.join(chosen)} exclude each other (Spot and flex-start VMs cannot "
                "consume reservations, and a node is either Spot or flex-start); choose one"
            )
        return self


NodePool = Annotated[Union[ExistingNodes, KarpenterNodePool, GkeNodePool], Field(discriminator="mode")]


# --- image -------------------------------------------------------------------------------

# Clusters whose nodes can run an image that exists only in this machine's Docker daemon
# (docs/component.md, "Local clusters", says how the image reaches each one).
LocalCluster = Literal["kind", "k3d", "minikube", "docker-desktop", "rancher-desktop"]
LOCAL_CLUSTERS: tuple[str, ...] = get_args(LocalCluster)


def registry_host(repository: str) -> Optional[str]:
    """The registry host an image repository names, or None (Docker Hub implied).

    Docker's rule: the first path component is a host when it has a '.' or a ':' or is
    `localhost`; otherwise `acme/sd` means `docker.io/acme/sd` and a bare `sd` means
    `docker.io/library/sd`.
    """
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


class PrebuiltImage(_Model):
    repository: Annotated[str, Field(pattern=r"^[a-z0-9]+([._:/-][a-z0-9]+)*$")]
    tag: Optional[Annotated[str, Field(pattern=r"^[\w][\w.-]{0,127}$")]] = None
    digest: Optional[Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]] = None
    pull_secret: Optional[Annotated[str, Field(pattern=_DNS_SUBDOMAIN)]] = None

    @model_validator(mode="after")
    def _tag_or_digest(self) -> "PrebuiltImage":
        if self.tag is None and self.digest is None:
            raise ValueError("image needs a tag or a digest (a moving 'latest' is not deployable)")
        if self.tag == "latest":
            raise ValueError("image.tag 'latest' is not allowed: pin a version or a digest")
        return self

    @property
    def reference(self) -> str:
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}"


class ImageBuild(_Model):
    # Registry (and path) to push to, e.g. ghcr.io/acme or 123.dkr.ecr.eu-west-1.amazonaws.com.
    registry: Optional[Annotated[str, Field(pattern=r"^[a-z0-9]+([._:/-][a-z0-9]+)*$")]] = None
    # Instead of a registry: the image is only loaded into this machine's Docker daemon, for
    # a local cluster of this kind, and referenced by tag (pulled IfNotPresent).
    local_cluster: Optional[LocalCluster] = None
    name: Annotated[str, Field(pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$")] = "stable-diffusion-inference"
    tag: Annotated[str, Field(pattern=r"^[\w][\w.-]{0,127}$")] = "v1"
    platforms: list[Literal["linux/amd64", "linux/arm64"]] = ["linux/amd64"]
    username: Optional[str] = None
    password: Optional[Union[ConfigSecretRef, str]] = None  # registry password/token
    pull_secret: Optional[Annotated[str, Field(pattern=_DNS_SUBDOMAIN)]] = None

    @field_validator("password", mode="before")
    @classmethod
    def _password(cls, value: Any) -> Any:
        if isinstance(value, dict) and set(value) != {"key"}:
            raise ValueError("image.build.password must be {key: NAME} (Pulumi secret config) or a string")
        return None if value is None else _secret_shape(value, "password")

    @model_validator(mode="after")
    def _credentials(self) -> "ImageBuild":
        if (self.username is None) != (self.password is None):
            raise ValueError("image.build.username and image.build.password go together")
        if self.username is not None and self.registry is None:
            raise ValueError("image.build.username needs image.build.registry")
        if self.registry is not None and self.local_cluster is not None:
            raise ValueError(
                "image.build.registry and image.build.local_cluster exclude each other: push to a "
                "registry the cluster pulls from, or load the image into a local cluster"
            )
        return self

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.name}" if self.registry else self.name


class BuiltImage(_Model):
    build: ImageBuild = ImageBuild()


def _image_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "build" if "build" in value else "prebuilt"
    return "build" if isinstance(value, BuiltImage) else "prebuilt"


Image = Annotated[
    Union[Annotated[PrebuiltImage, Tag("prebuilt")], Annotated[BuiltImage, Tag("build")]],
    Discriminator(_image_kind),
]


# --- StableStudio -----------------------------------------------------------------------


class StableStudioImage(_Model):
    """A prebuilt StableStudio image (static files behind a web server; see docs/component.md)."""

    repository: Annotated[str, Field(pattern=r"^[a-z0-9]+([._:/-][a-z0-9]+)*$")]
    tag: Optional[Annotated[str, Field(pattern=r"^[\w][\w.-]{0,127}$")]] = None
    digest: Optional[Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]] = None
    pull_secret: Optional[Annotated[str, Field(pattern=_DNS_SUBDOMAIN)]] = None

    @model_validator(mode="after")
    def _tag_or_digest(self) -> "StableStudioImage":
        if self.tag is None and self.digest is None:
            raise ValueError("stablestudio.image needs a tag or a digest")
        if self.tag == "latest":
            raise ValueError("stablestudio.image.tag 'latest' is not allowed: pin a version or a digest")
        return self

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag}"


class StableStudio(_Model):
    """StableStudio beside the API, at `path` on the API's Ingress host."""

    enabled: bool = False
    image: Optional[StableStudioImage] = None
    # The path it is served at; the image must serve the app under this same path.
    path: Annotated[str, Field(pattern=r"^/[a-z0-9][-a-z0-9_/]*[a-z0-9]$", max_length=100)] = "/stablestudio"
    port: Annotated[int, Field(ge=1024, le=65535)] = 8080
    replica_count: Annotated[int, Field(ge=1, le=10)] = 1
    cpu: Quantity = "100m"
    memory: Quantity = "128Mi"

    @model_validator(mode="after")
    def _image_when_enabled(self) -> "StableStudio":
        if self.enabled and self.image is None:
            raise _PathError(
                ("stablestudio", "image"),
                "required when stablestudio.enabled is true: {repository, tag} of your StableStudio image",
            )
        return self


# --- monitoring --------------------------------------------------------------------------

# Label keys and values as Kubernetes accepts them: an optional DNS-subdomain prefix and a
# name of at most 63 characters; values of at most 63, alphanumeric at both ends.
_LABEL_KEY = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
_LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
# A Prometheus duration as the PodMonitor CRD accepts it (e.g. 15s, 1m, 1m30s).
_DURATION = r"^(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$"


class Monitoring(_Model):
    """How Prometheus scrapes the API's `/metrics` (autoscaling reads what it scrapes)."""

    # Prometheus's namespace: the NetworkPolicy admits it on the API port. Default: the
    # namespace of autoscaling.prometheus_url's Service, when it names one.
    namespace: Optional[DnsLabel] = None
    # Declare a monitoring.coreos.com/v1 PodMonitor (the Prometheus Operator, e.g.
    # kube-prometheus-stack, ignores the pods' prometheus.io annotations).
    pod_monitor: bool = False
    # Extra labels on the PodMonitor, for the Prometheus resource's podMonitorSelector
    # (kube-prometheus-stack selects `release: <its release name>` by default).
    labels: dict[Annotated[str, Field(pattern=_LABEL_KEY, max_length=317)],
                 Annotated[str, Field(pattern=_LABEL_VALUE, max_length=63)]] = {}
    # The PodMonitor's scrape interval.
    interval: Annotated[str, Field(pattern=_DURATION, min_length=2)] = "15s"

    @model_validator(mode="after")
    def _pod_monitor_settings(self) -> "Monitoring":
        if not self.pod_monitor:
            unused = sorted({"labels", "interval"} & self.model_fields_set)
            if unused:
                raise ValueError(
                    f"monitoring.{' and monitoring.'.join(unused)} only apply to the PodMonitor: "
                    "set monitoring.pod_monitor: true"
                )
        return self


# --- the whole app -----------------------------------------------------------------------


class PresetRef(_Model):
    name: Annotated[str, Field(min_length=1)]


class AppConfig(_Model):
    """`stable-diffusion:app`, schema v1 (DESIGN.md section 6) plus optional extras."""

    preset: PresetRef
    presets: dict[DnsLabel, Preset] = {}
    namespace: DnsLabel = "stable-diffusion"
    ingress_http: IngressHttp = IngressHttp()
    stable_diffusion: StableDiffusionSettings
    node_pool: NodePool = ExistingNodes()
    image: Image = BuiltImage()
    network_policy: NetworkPolicySettings = NetworkPolicySettings()
    stablestudio: StableStudio = StableStudio()
    monitoring: Monitoring = Monitoring()

    @model_validator(mode="after")
    def _stablestudio_needs_host(self) -> "AppConfig":
        if self.stablestudio.enabled and self.ingress_http.host is None:
            raise _PathError(
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
                raise _PathError(("image",), _NO_PULLABLE_IMAGE)
            if build.local_cluster is not None and remote:
                raise _PathError(
                    ("image", "build", "local_cluster"),
                    f"node_pool.mode {mode} runs the pods on cloud nodes, which cannot see an image "
                    f"loaded into a local {build.local_cluster} cluster: set image.build.registry "
                    "(push it where the nodes pull from) or image.repository (a prebuilt image)",
                )
            if build.registry is not None and remote and registry_host(build.repository) is None:
                raise _PathError(
                    ("image", "build", "registry"),
                    _no_host_message(build.registry, mode, "e.g. ghcr.io/acme"),
                )
        else:
            _check_pullable(image.repository, ("image", "repository"), mode, remote, local_build_hint=True)
        studio = self.stablestudio
        if studio.enabled and studio.image is not None:
            _check_pullable(studio.image.repository, ("stablestudio", "image", "repository"), mode, remote)
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
        if isinstance(value, dict) and "build" in value and len(value) > 1:
            raise ValueError("image is either {repository, tag|digest} or {build: {...}}, not both")
        if isinstance(value, dict) and "build" not in value and "repository" not in value:
            raise ValueError(
                "image must be {repository, tag} (prebuilt) or {build: {registry, ...}}; "
                f"got keys {sorted(value)}"
            )
        if isinstance(value, dict) and value.get("build") is None and "build" in value:
            return {"build": {}}
        return value

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
            raise _PathError(
                ("preset", "name"),
                f"unknown preset '{name}'; allowed: {', '.join(sorted(catalogue))} "
                "(or define it under presets:)",
            )
        preset = catalogue[name]
        mode = self.node_pool.mode
        if mode == "gke" and preset.gpu_count and not preset.gke_accelerator:
            usable = sorted(n for n, p in catalogue.items() if not p.gpu_count or p.gke_accelerator)
            raise _PathError(
                ("preset", "name"),
                f"preset '{name}' has no GKE accelerator (node_pool.mode gke); "
                f"allowed with gke: {', '.join(usable)}",
            )
        if mode == "gke" and preset.gpu_count:
            self._check_gke_machine(name, preset)
        if mode == "karpenter" and preset.gpu_count and not preset.karpenter_gpu_name:
            usable = sorted(n for n, p in catalogue.items() if not p.gpu_count or p.karpenter_gpu_name)
            raise _PathError(
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
            raise _PathError(
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
            raise _PathError(("node_pool", "machine_type"), f"{error}{origin}") from None
        problem = gke_capacity_problem(machine, pool.spot, pool.flex_start, pool.reservation)
        if problem:
            raise _PathError(("node_pool", "spot"), problem)


_NO_PULLABLE_IMAGE = (
    "no image the cluster can pull: without image.build.registry the image is only built "
    "into this machine's Docker daemon, and a remote cluster's nodes (EKS, GKE, AKS, any "
    "Karpenter or GKE pool) then fail with ErrImagePull. Set image.build.registry (push to a "
    "registry the nodes pull from, e.g. ghcr.io/acme), or image.repository with image.tag or "
    "image.digest (a prebuilt image), or, for a cluster on this machine, "
    f"image.build.local_cluster ({', '.join(LOCAL_CLUSTERS)}); see docs/component.md"
)


def _no_host_message(repository: str, mode: str, example: str) -> str:
    return (
        f"'{repository}' names no registry host, so the nodes of node_pool.mode {mode} pull it "
        f"from Docker Hub (docker.io/{repository}): name the registry ({example}), or write "
        f"docker.io/{repository} if Docker Hub is meant"
    )


def _check_pullable(
    repository: str, loc: tuple[str, ...], mode: str, remote: bool, local_build_hint: bool = False
) -> None:
    """A prebuilt repository: never a bare (Docker official) name; with a host on cloud pools."""
    if "/" not in repository:
        message = (
            f"'{repository}' alone means docker.io/library/{repository} (Docker's official "
            f"images): write the registry and path (e.g. ghcr.io/acme/{repository}), or "
            f"docker.io/library/{repository} if that is meant"
        )
        if local_build_hint:
            message += (
                ". An image that exists only on this machine cannot be a prebuilt image (a tag "
                "is pulled Always): use image.build with image.build.local_cluster for a local cluster"
            )
        raise _PathError(loc, message)
    if remote and registry_host(repository) is None:
        raise _PathError(loc, _no_host_message(repository, mode, f"e.g. ghcr.io/{repository}"))


class _PathError(ValueError):
    """A cross-field error that knows its own path (pydantic would report it at the root)."""

    def __init__(self, loc: tuple[str, ...], message: str):
        super().__init__(message)
        self.loc = loc
        self.message = message


_PATTERN_NAMES = {
    _QUANTITY: "a Kubernetes quantity (e.g. 500m, 4, 24Gi)",
    _DNS_LABEL: "a DNS label (lower-case letters, digits and '-', at most 63)",
    _DNS_SUBDOMAIN: "a DNS name (lower-case letters, digits, '-' and '.')",
    _LORA_NAME: "an adapter name (letters, digits, '.', '_' and '-')",
    _LABEL_KEY: "a Kubernetes label key ([prefix/]name, name at most 63 of letters, digits, '-', '_', '.')",
    _LABEL_VALUE: "a Kubernetes label value (at most 63 of letters, digits, '-', '_', '.')",
    _DURATION: "a Prometheus duration (e.g. 15s, 1m, 1m30s)",
}

_UNION_TAGS = {
    *(("node_pool", mode) for mode in ("existing", "karpenter", "gke")),
    ("image", "prebuilt"), ("image", "build"), ("tls", "secret"), ("tls", "issuer"),
}


def _format_loc(loc: tuple[Any, ...], union_tags: bool = True) -> str:
    parts: list[str] = []
    skipped_tag = False
    for item in loc:
        # Drop pydantic's union-branch markers ('str', 'ConfigSecretRef', 'function-after[...]').
        if isinstance(item, str) and (item[:1].isupper() or "[" in item or item in ("str", "int")):
            continue
        if union_tags and parts and not skipped_tag and (parts[-1], item) in _UNION_TAGS:
            skipped_tag = True
            continue  # discriminated-union tag
        skipped_tag = False
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
            continue
        parts.append(str(item))
    return ".".join([CONFIG_KEY, *parts]) if parts else CONFIG_KEY


def _messages(error: ValidationError) -> list[str]:
    lines: list[str] = []
    seen: set[str] = set()
    for err in error.errors(include_url=False):
        ctx_error = (err.get("ctx") or {}).get("error")
        loc = tuple(err["loc"])
        message = err["msg"]
        path_error = isinstance(ctx_error, _PathError)
        if path_error:
            loc, message = ctx_error.loc, ctx_error.message
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if err["type"] == "string_pattern_mismatch":
            pattern = (err.get("ctx") or {}).get("pattern", "")
            message = f"{err['input']!r} is not {_PATTERN_NAMES.get(pattern, f'of the form {pattern}')}"
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see docs/component.md)"
        # A _PathError's path is written as the config spells it (no union-branch tags).
        line = f"{_format_loc(loc, union_tags=not path_error)}: {message}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


def parse_app_config(raw: Any) -> AppConfig:
    """Validate the structured config; raise `AppConfigError` naming every bad path."""
    if isinstance(raw, AppConfig):
        return raw
    if raw is None:
        raise AppConfigError(f"{CONFIG_KEY}: missing (set it in Pulumi.<stack>.yaml)")
    if not isinstance(raw, dict):
        raise AppConfigError(f"{CONFIG_KEY}: must be an object, got {type(raw).__name__}")
    try:
        return AppConfig.model_validate(raw)
    except ValidationError as error:
        lines = _messages(error)
        raise AppConfigError(
            f"invalid {CONFIG_KEY} ({len(lines)} problem{'s' if len(lines) != 1 else ''}):\n  "
            + "\n  ".join(lines)
        ) from None
