"""The package schema's types for the component's `app` input. GENERATED from the models
in components/config/ by `python -m components.config.generate`: do not edit by hand.

Pulumi's schema inference (provider/) reads these TypedDicts and the docstring under each
key. They describe shapes only: every value is validated by the pydantic models
(`parse_app_config`). Schema inference accepts no unions, so each union of the config is
one object with the keys of all its shapes (pydantic refuses keys of two shapes at once).

No `from __future__ import annotations`: the analyzer reads the annotations as objects.
"""

from typing import NotRequired, TypedDict


class PresetRef(TypedDict):
    """The GPU preset each replica gets."""

    name: str
    """Per-replica preset: a built-in name (cpu-small, gpu-t4-x1, gpu-l4-x1, gpu-a10g-x1, gpu-l40s-x1, gpu-a100-x1, gpu-h100-x1, gpu-h200-x1) or a key of `presets`."""


class CustomPreset(TypedDict):
    """A custom per-replica shape and the node labels that identify its GPU in each node-pool mode."""

    description: NotRequired[str]
    """Free text."""
    gpu_count: NotRequired[int]
    """`nvidia.com/gpu` per replica. Default: 0."""
    cpu: str
    """CPU, a Kubernetes quantity; requests = limits."""
    memory: str
    """Memory, a Kubernetes quantity; requests = limits."""
    gpu_product: NotRequired[str]
    """`existing`: the value of `nvidia.com/gpu.product` (GPU Feature Discovery)."""
    karpenter_gpu_name: NotRequired[str]
    """`karpenter`: the value of `karpenter.k8s.aws/instance-gpu-name`."""
    karpenter_min_gpu_memory_mib: NotRequired[int]
    """`karpenter`: the NodePool also requires `karpenter.k8s.aws/instance-gpu-memory` greater than this."""
    gke_accelerator: NotRequired[str]
    """`gke`: the value of `cloud.google.com/gke-accelerator` (the GKE accelerator type)."""
    gke_machine_type: NotRequired[str]
    """`gke`: machine type. It must carry `gke_accelerator`, at least `gpu_count` per node (see "GKE machine types and capacity"). Default: e2-standard-4."""


class Tls(TypedDict):
    """`{secret_name}` (an existing TLS Secret) or `{cluster_issuer}` (cert-manager)."""

    secret_name: NotRequired[str]
    """An existing TLS Secret in the namespace."""
    cluster_issuer: NotRequired[str]
    """A cert-manager ClusterIssuer."""


class IngressHttp(TypedDict):
    """The external endpoint: an Ingress for the API (and StableStudio's path)."""

    auth: NotRequired[bool]
    """HTTP Basic auth on the API (the `api_credentials` output). Default: true."""
    username: NotRequired[str]
    """Basic-auth user. Default: admin."""
    host: NotRequired[str]
    """External hostname. Without it the Ingress matches any host and `external_api.host` is the address the controller publishes."""
    class_name: NotRequired[str]
    """Ingress class: the controller that serves it. Default: traefik."""
    tls: NotRequired[Tls]
    """TLS: `{secret_name}` (an existing TLS Secret) or `{cluster_issuer}` (cert-manager fills `<name>-tls`); needs `host`."""
    controller_namespace: NotRequired[str]
    """Namespace of the ingress controller's pods, admitted by the NetworkPolicies. Default: `traefik` (traefik) or `ingress-nginx` (nginx)."""
    trusted_proxies: NotRequired[list[str]]
    """Addresses or CIDR networks of the proxies in front of the API, usually the ingress controller's pod network (e.g. `10.42.0.0/16`): only their `X-Forwarded-For`/`-Proto` is believed, so the server's log shows the real client (`SD_TRUSTED_PROXIES`). Default: none, and the log shows the controller's pod."""
    max_body_size: NotRequired[str]
    """nginx `proxy-body-size`. Default: 64m."""
    timeout_seconds: NotRequired[int]
    """nginx `proxy-read-timeout` / `proxy-send-timeout`. Default: 600."""
    annotations: NotRequired[dict[str, str]]
    """Extra Ingress annotations, merged in last."""


class Autoscaling(TypedDict):
    """KEDA autoscaling on the queue depth."""

    min_replicas: NotRequired[int]
    """Minimum replicas; 0 allowed (scale to zero). Default: 0."""
    max_replicas: NotRequired[int]
    """Maximum replicas (at least `min_replicas`). Default: 2."""
    target_queue_depth: NotRequired[int]
    """Queued requests per replica KEDA aims at. Default: 4."""
    prometheus_url: str
    """Prometheus that KEDA queries, `http(s)://host[:port]`; it must scrape the pods (see `monitoring`)."""
    activation_query: NotRequired[str]
    """Extra PromQL trigger that wakes the Deployment from zero replicas (with no pods there is no queue-depth series). Default: the ingress controller's request rate."""
    polling_interval: NotRequired[int]
    """Seconds between KEDA's queries. Default: 15."""
    cooldown_period: NotRequired[int]
    """Seconds without load before scaling to zero. Default: 300."""


class SecretRef(TypedDict):
    """A secret: `{key}` (Pulumi secret config key) or `{secret_name, secret_key}` (an existing Kubernetes Secret)."""

    key: NotRequired[str]
    """Name of a Pulumi secret config key (`pulumi config set --secret NAME ...`; `ns:NAME` for another namespace)."""
    secret_name: NotRequired[str]
    """An existing Secret in the app's namespace."""
    secret_key: NotRequired[str]
    """The key in that Secret."""


class Cache(TypedDict):
    """The model cache volume."""

    size: NotRequired[str]
    """Size of the model cache. Default: 50Gi."""
    storage_class: NotRequired[str]
    """With `ReadWriteMany`: one PVC shared by every replica; otherwise a per-pod ephemeral claim of this class. Default: a per-pod ephemeral claim of the cluster's default class."""
    access_mode: NotRequired[str]
    """Access mode of the claim. Default: ReadWriteMany."""


class Lora(TypedDict):
    """A LoRA adapter loaded onto the pipeline at start (`SD_LORA` entry `REPO[@REVISION]:NAME:WEIGHT`)."""

    repo: str
    """Hugging Face repo id (validated like `model_hf_name`) or an absolute directory in the pod (e.g. under `/models`)."""
    name: NotRequired[str]
    """The adapter's name in `<lora:NAME:WEIGHT>` prompt tags: letters, digits, `.`, `_`, `-` (at most 64); unique. Default: the repo's last part."""
    weight: NotRequired[float]
    """The adapter's weight where a prompt tag gives none: a finite number (a numeric string such as `"0.8"` from `pulumi config set --path` is accepted; booleans are not). Default: 1."""
    revision: NotRequired[str]
    """Pinned revision (branch, tag or commit) of the Hugging Face repo, fetched by the init container and loaded by the server; not with a directory `repo`. Default: the repo's default branch at the time each pod starts."""


class HuggingFaceModel(TypedDict):
    """The default checkpoint, its token and cache, and the LoRA adapters."""

    model_hf_name: str
    """Hugging Face repo id `owner/name`, or `builtin:tiny` / `builtin:tiny-sdxl`."""
    hf_token: NotRequired[SecretRef]
    """Hugging Face token: `{key: NAME}` (Pulumi secret config NAME), `{secret_name, secret_key}` (an existing Secret in the namespace), or a string (stored as a secret; from another language, use the component's `hfToken` input)."""
    revision: NotRequired[str]
    """Pinned revision (branch, tag or commit)."""
    cache: NotRequired[Cache]
    """The model cache volume."""
    loras: NotRequired[list[Lora]]
    """LoRA adapters loaded onto the pipeline at start, each `{repo, name, weight, revision}`."""


class ExtraModel(TypedDict):
    """Another checkpoint the server can switch to (loaded on first use)."""

    model_hf_name: str
    """Hugging Face repo id (owner/name); must differ from the default model and from each other."""
    revision: NotRequired[str]
    """Pinned revision (branch, tag or commit)."""


class Upscaler(TypedDict):
    """A learned (ESRGAN-family) upscaler for Extras and the hires fix (`SD_UPSCALER` entry `REPO_OR_DIR[@REVISION]:NAME`)."""

    repo: str
    """Hugging Face repo id holding one `.safetensors` or `.pth` ESRGAN/RRDBNet network at its top level (the one file fetched; a `.safetensors` one rather than a `.pth`), or an absolute directory in the pod (e.g. under `/models`)."""
    name: NotRequired[str]
    """The name clients pick it by (`upscaler_1`, `hr_upscaler`): letters, digits, space, `.`, `_`, `+`, `-`, `()`; unique, and none of the resampling names (None, Lanczos, Nearest, Bicubic, Bilinear). Default: the repo's last part."""
    revision: NotRequired[str]
    """Pinned revision (branch, tag or commit) of the Hugging Face repo, fetched by the init container and loaded by the server; not with a directory `repo`. Default: the repo's default branch at the time each pod starts."""


class StableDiffusionSettings(TypedDict):
    """Replicas, models and serving settings."""

    replica_count: NotRequired[int]
    """Fixed replicas; ignored when `autoscaling` is set. Default: 1."""
    autoscaling: NotRequired[Autoscaling]
    """KEDA ScaledObject settings; off when absent."""
    hugging_face_model: HuggingFaceModel
    """The default model."""
    extra_models: NotRequired[list[ExtraModel]]
    """More checkpoints the server can switch to (A1111 `sd_model_checkpoint`, OpenAI `model`), each `{model_hf_name, revision}`, loaded on first use."""
    upscalers: NotRequired[list[Upscaler]]
    """Learned upscalers offered by `/sdapi/v1/upscalers` besides the resampling ones, each `{repo, name, revision}`; prefetched by the init container like the models, loaded on first use."""
    max_loaded_models: NotRequired[int]
    """Checkpoints kept in memory at once, the least recently used evicted (`SD_MAX_LOADED_MODELS`). Default: 1."""
    max_batch_size: NotRequired[int]
    """Most images in one pipeline call (`SD_MAX_BATCH_SIZE`). Default: 4."""
    queue_size: NotRequired[int]
    """Requests waiting or running per replica (`SD_QUEUE_SIZE`). Default: 32."""
    compile: NotRequired[str]
    """The fast path (`SD_COMPILE`): `auto` compiles the UNet and VAE decoder with CUDA graphs on a GPU and warms every batch size before ready (eager on a CPU), `max` adds max-autotune (a slower first start), `off` serves eager; compiled code is cached on the model cache volume. Default: auto."""
    precompile: NotRequired[str]
    """The compiled forward of each warmed shape is saved in the compile cache and loaded at the next start instead of traced again (`SD_PRECOMPILE`): `auto` wherever the model compiles with fullgraph and static shapes, `off` traces every warmed shape at every start (an escape hatch: the API is experimental in PyTorch). Default: auto."""
    warmup_sizes: NotRequired[list[str]]
    """Image sizes compiled and run at every batch size before a replica is ready (`SD_WARMUP_SIZES`): `WIDTHxHEIGHT` (multiples of 8, at least 64) or `native`; `auto` alone: the model's native size when compiled; `none` alone: no warm-up, each size compiles on its first request. Once warmed, other sizes run eager (never a compile while serving): list every size your clients ask for. Default: [auto]."""
    cors_origins: NotRequired[list[str]]
    """Origins allowed to call the API from a browser (`SD_CORS_ORIGINS`); StableStudio's is added when it is enabled."""
    termination_grace_period_seconds: NotRequired[int]
    """Time to finish in-flight generations on SIGTERM. Default: 300."""
    startup_failure_threshold: NotRequired[int]
    """Startup probe budget, x 10 s: big models load slowly. Default: 90."""


class NodePool(TypedDict):
    """How GPU nodes are found or made: `mode` `existing` (default), `karpenter` or `gke`, and that mode's fields."""

    mode: NotRequired[str]
    """`existing`, `karpenter` or `gke`. Default: existing."""
    node_selector: NotRequired[dict[str, str]]
    """[existing] Overrides the preset's selector (e.g. a cluster without GPU Feature Discovery)."""
    node_class: NotRequired[str]
    """[karpenter] Node class name. Default: default."""
    node_class_kind: NotRequired[str]
    """[karpenter] Node class kind. Default: EC2NodeClass."""
    node_class_group: NotRequired[str]
    """[karpenter] Node class API group. Default: karpenter.k8s.aws."""
    capacity_types: NotRequired[list[str]]
    """[karpenter] Capacity types the pool may launch. Default: [on-demand]."""
    consolidate_after: NotRequired[str]
    """[karpenter] How long an empty node stays before it is removed. Default: 10m."""
    expire_after: NotRequired[str]
    """[karpenter] Node lifetime before it is replaced. Default: 720h."""
    cluster: NotRequired[str]
    """[gke] Cluster name."""
    location: NotRequired[str]
    """[gke] Region or zone."""
    project: NotRequired[str]
    """[gke] Project. Default: the provider's."""
    machine_type: NotRequired[str]
    """[gke] Machine type; it must carry the preset's `gke_accelerator`. Default: the preset's `gke_machine_type`."""
    spot: NotRequired[bool]
    """[gke] Spot VMs. Default: false."""
    min_node_count: NotRequired[int]
    """[gke] Nodes per zone, at least. Default: 0."""
    max_node_count: NotRequired[int]
    """[gke] Nodes per zone, at most. Default: enough for max replicas + 1."""
    disk_size_gb: NotRequired[int]
    """[gke] Boot disk size. Default: 200."""
    gpu_driver_version: NotRequired[str]
    """[gke] GPU driver GKE installs. Default: LATEST."""
    flex_start: NotRequired[bool]
    """[gke] Flex-start (Dynamic Workload Scheduler) VMs: GPUs that on-demand cannot get; each node runs at most 7 days, then is replaced. Default: false."""
    reservation: NotRequired[str]
    """[gke] A specific Compute Engine reservation to take the nodes from (by name). Without it an on-demand pool consumes any matching reservation automatically."""


class ConfigSecretKey(TypedDict):
    """`{key}`: a Pulumi secret config key."""

    key: str
    """Name of a Pulumi secret config key (`pulumi config set --secret NAME ...`; `ns:NAME` for another namespace)."""


class ImageBuild(TypedDict):
    """Build `inference/` with pulumi-docker-build."""

    registry: NotRequired[str]
    """Registry (and path) to push to, e.g. `ghcr.io/acme` or `123.dkr.ecr.eu-west-1.amazonaws.com`; the image is deployed by digest."""
    local_cluster: NotRequired[str]
    """Instead of a registry, for a cluster on this machine: the image is only loaded into this machine's Docker daemon and deployed as `name:tag`, pulled `IfNotPresent` (see "Local clusters")."""
    name: NotRequired[str]
    """Image name. Default: stable-diffusion-inference."""
    tag: NotRequired[str]
    """Tag. Default: v1."""
    platforms: NotRequired[list[str]]
    """Platforms to build for. Default: [linux/amd64]."""
    username: NotRequired[str]
    """Registry user; goes with `password`."""
    password: NotRequired[ConfigSecretKey]
    """Registry password or token: `{key: NAME}` (Pulumi secret config) or a string; from another language, the component's `registryPassword` input."""
    pull_secret: NotRequired[str]
    """imagePullSecret for the pods."""


class Image(TypedDict):
    """The inference image: `{repository, tag|digest}` (prebuilt) or `{build: {...}}`."""

    repository: NotRequired[str]
    """Image repository, with its registry host (e.g. `ghcr.io/acme/sd`)."""
    tag: NotRequired[str]
    """Tag (not `latest`); pulled `Always`."""
    digest: NotRequired[str]
    """Digest (`sha256:...`); pulled `IfNotPresent`."""
    pull_secret: NotRequired[str]
    """imagePullSecret for the pods."""
    build: NotRequired[ImageBuild]
    """Build `inference/` (the repository root as context) instead of a prebuilt image."""


class NetworkPolicy(TypedDict):
    """Who may reach the pods."""

    enabled: NotRequired[bool]
    """Declare the NetworkPolicy. Default: true."""
    allowed_namespaces: NotRequired[list[str]]
    """In-cluster namespaces whose pods may call the API (besides the ingress controller's)."""


class StableStudioImage(TypedDict):
    """Your StableStudio image (static files behind a web server; there is no official one)."""

    repository: str
    """Image repository, with its registry host (e.g. `ghcr.io/acme/sd`)."""
    tag: NotRequired[str]
    """Tag (not `latest`); pulled `Always`."""
    digest: NotRequired[str]
    """Digest (`sha256:...`); pulled `IfNotPresent`."""
    pull_secret: NotRequired[str]
    """imagePullSecret for the pods."""


class StableStudio(TypedDict):
    """StableStudio beside the API, on the same Ingress host."""

    enabled: NotRequired[bool]
    """Deploy StableStudio beside the API. Default: false."""
    image: NotRequired[StableStudioImage]
    """Your StableStudio image, `{repository, tag}` or `{repository, digest}`, optional `pull_secret`; required when enabled."""
    path: NotRequired[str]
    """Path on the API's Ingress host; the image must serve the app under this same path. Default: /stablestudio."""
    port: NotRequired[int]
    """The container's HTTP port (at least 1024: the pod has no capabilities). Default: 8080."""
    replica_count: NotRequired[int]
    """Replicas. Default: 1."""
    cpu: NotRequired[str]
    """CPU; requests = limits. Default: 100m."""
    memory: NotRequired[str]
    """Memory; requests = limits. Default: 128Mi."""


class Monitoring(TypedDict):
    """How Prometheus scrapes the API's /metrics (autoscaling reads what it scrapes)."""

    namespace: NotRequired[str]
    """Prometheus's namespace, admitted by the NetworkPolicy on the API port. Default: the namespace of `autoscaling.prometheus_url`'s Service, when it names one."""
    pod_monitor: NotRequired[bool]
    """Declare a `monitoring.coreos.com/v1` PodMonitor for the Prometheus Operator (e.g. kube-prometheus-stack, which ignores the pods' `prometheus.io` annotations). Default: false."""
    labels: NotRequired[dict[str, str]]
    """Extra labels on the PodMonitor, for the Prometheus resource's `podMonitorSelector` (kube-prometheus-stack: `release: <its release name>`)."""
    interval: NotRequired[str]
    """The PodMonitor's scrape interval. Default: 15s."""


class App(TypedDict):
    """The app inputs (the `stable-diffusion:app` config); see docs/component.md."""

    preset: PresetRef
    """The GPU preset per replica."""
    presets: NotRequired[dict[str, CustomPreset]]
    """Custom presets by name; one with a built-in name replaces the built-in one."""
    namespace: NotRequired[str]
    """Namespace, created and labelled Pod Security `restricted` (enforce, audit, warn). Default: stable-diffusion."""
    ingress_http: NotRequired[IngressHttp]
    """The external endpoint."""
    stable_diffusion: StableDiffusionSettings
    """Replicas, models and serving."""
    node_pool: NotRequired[NodePool]
    """GPU nodes: found (`existing`) or made (`karpenter`, `gke`). `node_pool: karpenter` is short for `{mode: karpenter}`."""
    image: NotRequired[Image]
    """The inference image: prebuilt, or `inference/` built and pushed to a registry or loaded into a local cluster."""
    network_policy: NotRequired[NetworkPolicy]
    """NetworkPolicy settings."""
    stablestudio: NotRequired[StableStudio]
    """StableStudio beside the API."""
    monitoring: NotRequired[Monitoring]
    """Prometheus scraping: its namespace, a PodMonitor."""
