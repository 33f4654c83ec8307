"""The component's typed surface: TypedDicts that Pulumi's schema inference reads.

`provider/` hosts `StableDiffusion` as a multi-language component; Pulumi infers the
package schema (what TypeScript, Go and YAML programs see) from these annotations. They
describe *shapes* only and carry no validation: every value is still validated by the
pydantic models in components/config/ (`parse_app_config`) before any resource is declared, with
the same error messages and paths. A test checks that every pydantic field has its key
here and vice versa, so the two cannot drift.

Schema inference accepts no unions, so each union of the config is one object with the
keys of all its shapes (at most one shape's keys may be given; pydantic says which):
`node_pool` `{mode, ...}`, `image` `{repository, tag|digest}` or `{build}`,
`ingress_http.tls` `{secret_name}` or `{cluster_issuer}`, `hf_token` `{key}` or
`{secret_name, secret_key}`. A literal token string goes in the component's top-level
`hfToken` input (a secret), not in `app`.

This module must not use `from __future__ import annotations`: the analyzer reads the
annotations as objects.
"""

from typing import NotRequired, Optional, TypedDict

import pulumi

# --- inputs: `app` (the `stable-diffusion:app` config) ---------------------------------


class PresetRef(TypedDict):
    """The GPU preset each replica gets."""

    name: str
    """A built-in preset (cpu-small, gpu-t4-x1, gpu-l4-x1, gpu-a10g-x1, gpu-l40s-x1, gpu-a100-x1, gpu-h100-x1, gpu-h200-x1) or a key of `presets`."""


class CustomPreset(TypedDict):
    """A custom per-replica shape and the node labels that identify its GPU."""

    description: NotRequired[str]
    """Free text."""
    gpu_count: NotRequired[int]
    """nvidia.com/gpu per replica (0-16, default 0)."""
    cpu: str
    """CPU quantity; requests = limits."""
    memory: str
    """Memory quantity; requests = limits."""
    gpu_product: NotRequired[str]
    """nvidia.com/gpu.product value (existing nodes)."""
    karpenter_gpu_name: NotRequired[str]
    """karpenter.k8s.aws/instance-gpu-name value."""
    karpenter_min_gpu_memory_mib: NotRequired[int]
    """Karpenter: instance-gpu-memory greater than this."""
    gke_accelerator: NotRequired[str]
    """cloud.google.com/gke-accelerator value."""
    gke_machine_type: NotRequired[str]
    """GKE machine type (default e2-standard-4)."""


class SecretRef(TypedDict):
    """A secret: `{key}` (Pulumi secret config key) or `{secret_name, secret_key}` (an existing Kubernetes Secret)."""

    key: NotRequired[str]
    """Name of a Pulumi secret config key (`ns:NAME` for another namespace)."""
    secret_name: NotRequired[str]
    """An existing Secret in the app's namespace."""
    secret_key: NotRequired[str]
    """The key in that Secret."""


class ConfigSecretKey(TypedDict):
    """`{key}`: a Pulumi secret config key."""

    key: str
    """Name of a Pulumi secret config key."""


class Cache(TypedDict):
    """The model cache volume."""

    size: NotRequired[str]
    """Size (default 50Gi)."""
    storage_class: NotRequired[str]
    """With ReadWriteMany: one shared PVC; otherwise a per-pod ephemeral claim of this class."""
    access_mode: NotRequired[str]
    """ReadWriteMany (default), ReadWriteOnce or ReadWriteOncePod."""


class Lora(TypedDict):
    """A LoRA adapter loaded at start."""

    repo: str
    """Hugging Face repo id, or an absolute directory in the pod."""
    name: NotRequired[str]
    """Adapter name for `<lora:NAME:WEIGHT>` (letters, digits, '.', '_', '-'; default: the repo's last part)."""
    weight: NotRequired[float]
    """Default weight (default 1)."""


class HuggingFaceModel(TypedDict):
    """The default checkpoint and its LoRA adapters."""

    model_hf_name: str
    """Hugging Face repo id (owner/name), or builtin:tiny / builtin:tiny-sdxl."""
    hf_token: NotRequired[SecretRef]
    """HF token reference; a literal token goes in the top-level hfToken input."""
    revision: NotRequired[str]
    """Pinned revision (branch, tag or commit)."""
    cache: NotRequired[Cache]
    """Model cache volume."""
    loras: NotRequired[list[Lora]]
    """LoRA adapters loaded onto the pipeline at start."""


class ExtraModel(TypedDict):
    """Another checkpoint the server can switch to."""

    model_hf_name: str
    """Hugging Face repo id (owner/name)."""
    revision: NotRequired[str]
    """Pinned revision."""


class Autoscaling(TypedDict):
    """KEDA autoscaling on the queue depth."""

    min_replicas: NotRequired[int]
    """Minimum replicas (0 allowed; default 0)."""
    max_replicas: NotRequired[int]
    """Maximum replicas (default 2)."""
    target_queue_depth: NotRequired[int]
    """Queued requests per replica KEDA aims at (default 4)."""
    prometheus_url: str
    """Prometheus that KEDA queries, http(s)://host[:port]."""
    activation_query: NotRequired[str]
    """PromQL that wakes the Deployment from zero replicas."""
    polling_interval: NotRequired[int]
    """Seconds (default 15)."""
    cooldown_period: NotRequired[int]
    """Seconds (default 300)."""


class StableDiffusionSettings(TypedDict):
    """Replicas, model and serving settings."""

    replica_count: NotRequired[int]
    """Fixed replicas (default 1); ignored with autoscaling."""
    autoscaling: NotRequired[Autoscaling]
    """KEDA ScaledObject settings; off when absent."""
    hugging_face_model: HuggingFaceModel
    """The default model."""
    extra_models: NotRequired[list[ExtraModel]]
    """More checkpoints, loaded on first use."""
    max_loaded_models: NotRequired[int]
    """Checkpoints kept in memory at once (default 1)."""
    max_batch_size: NotRequired[int]
    """SD_MAX_BATCH_SIZE (default 4)."""
    queue_size: NotRequired[int]
    """SD_QUEUE_SIZE (default 32)."""
    cors_origins: NotRequired[list[str]]
    """SD_CORS_ORIGINS (StableStudio's origin is added when it is enabled)."""
    termination_grace_period_seconds: NotRequired[int]
    """Time to finish in-flight generations on SIGTERM (default 300)."""
    startup_failure_threshold: NotRequired[int]
    """Startup probe budget x 10 s (default 90)."""


class Tls(TypedDict):
    """`{secret_name}` (an existing TLS Secret) or `{cluster_issuer}` (cert-manager)."""

    secret_name: NotRequired[str]
    """An existing TLS Secret."""
    cluster_issuer: NotRequired[str]
    """A cert-manager ClusterIssuer."""


class IngressHttp(TypedDict):
    """The external endpoint."""

    auth: NotRequired[bool]
    """HTTP Basic auth on the API (default true)."""
    username: NotRequired[str]
    """Basic-auth user (default admin)."""
    host: NotRequired[str]
    """External hostname."""
    class_name: NotRequired[str]
    """traefik (default) or nginx."""
    tls: NotRequired[Tls]
    """TLS; needs host."""
    controller_namespace: NotRequired[str]
    """The ingress controller's namespace (default traefik / ingress-nginx)."""
    max_body_size: NotRequired[str]
    """nginx proxy-body-size (default 64m)."""
    timeout_seconds: NotRequired[int]
    """nginx proxy read/send timeout (default 600)."""
    annotations: NotRequired[dict[str, str]]
    """Extra Ingress annotations."""


class NodePool(TypedDict):
    """How GPU nodes are found or made: mode existing (default), karpenter or gke, and that mode's fields."""

    mode: NotRequired[str]
    """existing, karpenter or gke."""
    node_selector: NotRequired[dict[str, str]]
    """existing: overrides the preset's selector."""
    node_class: NotRequired[str]
    """karpenter: node class name (default default)."""
    node_class_kind: NotRequired[str]
    """karpenter: node class kind (default EC2NodeClass)."""
    node_class_group: NotRequired[str]
    """karpenter: node class group (default karpenter.k8s.aws)."""
    capacity_types: NotRequired[list[str]]
    """karpenter: on-demand, spot, reserved."""
    consolidate_after: NotRequired[str]
    """karpenter: default 10m."""
    expire_after: NotRequired[str]
    """karpenter: default 720h."""
    cluster: NotRequired[str]
    """gke: cluster name (required for gke)."""
    location: NotRequired[str]
    """gke: region or zone (required for gke)."""
    project: NotRequired[str]
    """gke: project."""
    machine_type: NotRequired[str]
    """gke: machine type (default: the preset's)."""
    spot: NotRequired[bool]
    """gke: spot VMs."""
    min_node_count: NotRequired[int]
    """gke: per zone (default 0)."""
    max_node_count: NotRequired[int]
    """gke: per zone (default: enough for max replicas + 1)."""
    disk_size_gb: NotRequired[int]
    """gke: boot disk (default 200)."""
    gpu_driver_version: NotRequired[str]
    """gke: DEFAULT, LATEST (default) or INSTALLATION_DISABLED."""
    flex_start: NotRequired[bool]
    """gke: flex-start VMs (Dynamic Workload Scheduler; nodes live at most 7 days)."""
    reservation: NotRequired[str]
    """gke: name of a specific Compute Engine reservation to take nodes from."""


class ImageBuild(TypedDict):
    """Build inference/ with pulumi-docker-build."""

    registry: NotRequired[str]
    """Registry host (and path) to push to, e.g. ghcr.io/acme; or local_cluster."""
    local_cluster: NotRequired[str]
    """Instead of a registry, for a cluster on this machine: kind, k3d, minikube, docker-desktop or rancher-desktop (the image is loaded into the local Docker daemon only)."""
    name: NotRequired[str]
    """Image name (default stable-diffusion-inference)."""
    tag: NotRequired[str]
    """Tag (default v1)."""
    platforms: NotRequired[list[str]]
    """linux/amd64 (default), linux/arm64."""
    username: NotRequired[str]
    """Registry user."""
    password: NotRequired[ConfigSecretKey]
    """Registry password config key; or the top-level registryPassword input."""
    pull_secret: NotRequired[str]
    """imagePullSecret for the pods."""


class Image(TypedDict):
    """`{repository, tag|digest}` (prebuilt) or `{build: {...}}`."""

    repository: NotRequired[str]
    """Prebuilt image repository."""
    tag: NotRequired[str]
    """Prebuilt image tag (not latest)."""
    digest: NotRequired[str]
    """Prebuilt image digest (sha256:...)."""
    pull_secret: NotRequired[str]
    """imagePullSecret for the pods."""
    build: NotRequired[ImageBuild]
    """Build inference/ instead."""


class NetworkPolicy(TypedDict):
    """Who may reach the pods."""

    enabled: NotRequired[bool]
    """Declare the NetworkPolicy (default true)."""
    allowed_namespaces: NotRequired[list[str]]
    """In-cluster namespaces allowed to call the API."""


class Monitoring(TypedDict):
    """How Prometheus scrapes the API's /metrics (autoscaling reads what it scrapes)."""

    namespace: NotRequired[str]
    """Prometheus's namespace, admitted by the NetworkPolicy (default: the namespace autoscaling.prometheus_url names)."""
    pod_monitor: NotRequired[bool]
    """Declare a monitoring.coreos.com/v1 PodMonitor for the Prometheus Operator (default false)."""
    labels: NotRequired[dict[str, str]]
    """Extra PodMonitor labels for the Prometheus resource's podMonitorSelector, e.g. release: kube-prometheus-stack."""
    interval: NotRequired[str]
    """PodMonitor scrape interval (default 15s)."""


class StableStudioImage(TypedDict):
    """Your StableStudio image."""

    repository: str
    """Image repository."""
    tag: NotRequired[str]
    """Tag (not latest)."""
    digest: NotRequired[str]
    """Digest (sha256:...)."""
    pull_secret: NotRequired[str]
    """imagePullSecret."""


class StableStudio(TypedDict):
    """StableStudio beside the API, on the same Ingress host."""

    enabled: NotRequired[bool]
    """Deploy it (default false)."""
    image: NotRequired[StableStudioImage]
    """Required when enabled."""
    path: NotRequired[str]
    """Path on the API's host (default /stablestudio); the image must serve the app under it."""
    port: NotRequired[int]
    """Container port (default 8080)."""
    replica_count: NotRequired[int]
    """Replicas (default 1)."""
    cpu: NotRequired[str]
    """CPU (default 100m)."""
    memory: NotRequired[str]
    """Memory (default 128Mi)."""


class App(TypedDict):
    """The app inputs (the `stable-diffusion:app` config); see docs/component.md."""

    preset: PresetRef
    """GPU preset per replica."""
    presets: NotRequired[dict[str, CustomPreset]]
    """Custom presets by name."""
    namespace: NotRequired[str]
    """Namespace, created with Pod Security restricted (default stable-diffusion)."""
    ingress_http: NotRequired[IngressHttp]
    """External endpoint."""
    stable_diffusion: StableDiffusionSettings
    """Replicas, model and serving."""
    node_pool: NotRequired[NodePool]
    """GPU nodes (default: existing)."""
    image: NotRequired[Image]
    """Inference image: prebuilt, or inference/ built and pushed to a registry or loaded into a local cluster."""
    network_policy: NotRequired[NetworkPolicy]
    """NetworkPolicy settings."""
    stablestudio: NotRequired[StableStudio]
    """StableStudio beside the API."""
    monitoring: NotRequired[Monitoring]
    """Prometheus scraping: its namespace, a PodMonitor."""


class StableDiffusionArgs(TypedDict):
    """Inputs of the component."""

    app: App
    """The `stable-diffusion:app` config, validated before any resource is declared. From Python a validated `AppConfig` is accepted too. See docs/component.md."""
    hf_token: NotRequired[pulumi.Input[str]]
    """Overrides `stable_diffusion.hugging_face_model.hf_token` (stored as a secret)."""
    registry_password: NotRequired[pulumi.Input[str]]
    """Overrides `image.build.password` for pushing the built image."""


# --- outputs ---------------------------------------------------------------------------


class ApiEndpoint(TypedDict):
    """Where the API answers."""

    host: Optional[str]
    """Hostname (external: the configured or published host)."""
    port: int
    """Port."""
    protocol: str
    """http or https."""
    base_path: str
    """Path prefix of the API."""
    url: Optional[str]
    """protocol://host[:port]/."""


class HfModel(TypedDict):
    """The model served by default."""

    model_hf_name: str
    """Hugging Face repo id."""


class ApiCredentials(TypedDict):
    """Basic-auth credentials of the API (a secret)."""

    username: str
    """User name."""
    password: str
    """Password."""
