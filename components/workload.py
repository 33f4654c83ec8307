"""The workload: Namespace, ServiceAccount, model cache, Deployment, PodDisruptionBudget.

The Deployment runs the inference image (`python -m inference serve`, configured by
`SD_*` variables) behind an init container that prefetches the models, LoRA adapters and
learned upscalers into the cache (`python -m inference download`, given the same `SD_*`
model variables).
Pods are restricted-PSS clean (pods.py; the /models cache is writable besides /tmp).

Model cache: with a storage class and ReadWriteMany, one PVC shared by every replica;
otherwise a generic ephemeral volume per pod (a claim that lives and dies with the pod),
so a ReadWriteOnce claim is never shared by several replicas.
"""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from .config import AppConfig
from .image import ImageRef
from .meta import AUTH_DIR, AUTH_FILE, CACHE_MOUNT, HF_TOKEN_DIR, PEER_TOKEN_FILE, PORT, PORT_NAME, Names
from .node_pools import Placement
from .pods import container_security_context, guaranteed, http_probe, pod_spec, tmp_mount, tmp_volume
from .presets import GPU_RESOURCE
from .secrets import HTPASSWD_KEY, PEER_TOKEN_KEY, Auth, SecretKeyRef

PSS_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/audit": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}
# Seconds the server needs to exit after its drain gives up (it logs, then exits).
DRAIN_EXIT_MARGIN_SECONDS = 10
PRESTOP_SLEEP_SECONDS = 10
INIT_RESOURCES = {"cpu": "1", "memory": "4Gi", "ephemeral-storage": "1Gi"}
TMP_SIZE = "2Gi"
EPHEMERAL_STORAGE = "4Gi"  # /tmp + logs + writable layer


def namespace(names: Names, opts: pulumi.ResourceOptions) -> k8s.core.v1.Namespace:
    return k8s.core.v1.Namespace(
        f"{names.base}-namespace",
        metadata={"name": names.namespace, "labels": {**names.labels("namespace"), **PSS_LABELS}},
        opts=opts,
    )


def service_account(names: Names, opts: pulumi.ResourceOptions) -> k8s.core.v1.ServiceAccount:
    return k8s.core.v1.ServiceAccount(
        f"{names.base}-sa",
        metadata=names.metadata(names.service_account),
        automount_service_account_token=False,
        opts=opts,
    )


def shared_cache(app: AppConfig, names: Names, opts: pulumi.ResourceOptions):
    """The shared RWX cache claim, or None when each pod gets its own ephemeral claim."""
    cache = app.stable_diffusion.hugging_face_model.cache
    if not cache.shared:
        return None
    return k8s.core.v1.PersistentVolumeClaim(
        f"{names.base}-model-cache",
        metadata=names.metadata(names.cache_claim, "model-cache"),
        spec={
            "accessModes": ["ReadWriteMany"],
            "storageClassName": cache.storage_class,
            "resources": {"requests": {"storage": cache.size}},
        },
        opts=opts,
    )


def _cache_volume(app: AppConfig, names: Names) -> dict:
    cache = app.stable_diffusion.hugging_face_model.cache
    if cache.shared:
        return {"name": "model-cache", "persistentVolumeClaim": {"claimName": names.cache_claim}}
    claim_spec = {
        "accessModes": [cache.access_mode if cache.storage_class else "ReadWriteOnce"],
        "resources": {"requests": {"storage": cache.size}},
    }
    if cache.storage_class:
        claim_spec["storageClassName"] = cache.storage_class
    return {
        "name": "model-cache",
        "ephemeral": {
            "volumeClaimTemplate": {
                "metadata": {"labels": names.labels("model-cache")},
                "spec": claim_spec,
            }
        },
    }


def _resources(app: AppConfig) -> dict:
    preset = app.resolved_preset
    amounts = {"cpu": preset.cpu, "memory": preset.memory, "ephemeral-storage": EPHEMERAL_STORAGE}
    if preset.gpu_count:
        amounts[GPU_RESOURCE] = str(preset.gpu_count)
    return guaranteed(amounts)


def model_list(app: AppConfig) -> str:
    """`SD_MODEL`: the default model, then each extra one as `REPO[@REVISION]`.

    The default model's revision travels in `SD_REVISION` (as before extra models).
    """
    settings = app.stable_diffusion
    models = [settings.hugging_face_model.model_hf_name]
    models += [f"{m.model_hf_name}@{m.revision}" if m.revision else m.model_hf_name
               for m in settings.extra_models]
    return ",".join(models)


def _pinned(repo: str, revision: Optional[str]) -> str:
    """`REPO[@REVISION]`: a Hub repo id never holds '@', so the server splits there."""
    return f"{repo}@{revision}" if revision else repo


def lora_list(app: AppConfig) -> str:
    """`SD_LORA`: `REPO_OR_DIR[@REVISION]:NAME:WEIGHT`, comma-separated (name and weight always given)."""
    return ",".join(
        f"{_pinned(lora.repo, lora.revision)}:{lora.adapter_name}:{lora.weight:g}"
        for lora in app.stable_diffusion.hugging_face_model.loras
    )


def upscaler_list(app: AppConfig) -> str:
    """`SD_UPSCALER`: `REPO_OR_DIR[@REVISION]:NAME`, comma-separated (the name always given)."""
    return ",".join(f"{_pinned(u.repo, u.revision)}:{u.upscaler_name}" for u in app.stable_diffusion.upscalers)


def _model_env(app: AppConfig) -> list[dict]:
    """What to load and where to cache it. The init container (`download`) and the server
    (`serve`) get exactly this list, so the server finds everything the init container
    prefetched."""
    settings = app.stable_diffusion
    model = settings.hugging_face_model
    env = [{"name": "SD_MODEL", "value": model_list(app)}]
    if model.revision:
        env.append({"name": "SD_REVISION", "value": model.revision})
    if model.loras:
        env.append({"name": "SD_LORA", "value": lora_list(app)})
    if settings.upscalers:  # loaded on first use, so fetched ahead like the rest
        env.append({"name": "SD_UPSCALER", "value": upscaler_list(app)})
    # The init container sees no GPU, yet must fetch the weights the GPU server loads
    # (the fp16 variant): both decide from this device instead of what they can see.
    env.append({"name": "SD_DEVICE", "value": "cuda" if app.resolved_preset.gpu_count else "cpu"})
    env += [
        {"name": "SD_CACHE_DIR", "value": CACHE_MOUNT},
        {"name": "HF_HOME", "value": f"{CACHE_MOUNT}/huggingface"},
        {"name": "HOME", "value": "/tmp"},
    ]
    return env


def _token_env_and_mount(token: Optional[SecretKeyRef]) -> tuple[list[dict], list[dict], list[dict]]:
    if token is None:
        return [], [], []
    env = [{"name": "HF_TOKEN_PATH", "value": f"{HF_TOKEN_DIR}/{token.key}"}]
    mounts = [{"name": "hf-token", "mountPath": HF_TOKEN_DIR, "readOnly": True}]
    volumes = [{
        "name": "hf-token",
        "secret": {"secretName": token.name, "items": [{"key": token.key, "path": token.key}],
                   "defaultMode": 0o440},
    }]
    return env, mounts, volumes


def _init_container(app: AppConfig, image: ImageRef, token_env: list, token_mounts: list) -> dict:
    # `download` reads SD_MODEL / SD_REVISION / SD_LORA / SD_UPSCALER / SD_DEVICE /
    # SD_CACHE_DIR like `serve` does and prefetches every model, LoRA and upscaler into the cache.
    return {
        "name": "model-download",
        "image": image.reference,
        "imagePullPolicy": image.pull_policy,
        "args": ["download"],
        "env": _model_env(app) + token_env,
        "resources": guaranteed(INIT_RESOURCES),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "model-cache", "mountPath": CACHE_MOUNT}, tmp_mount(), *token_mounts],
    }


def _server_container(
    app: AppConfig, names: Names, image: ImageRef, auth: Optional[Auth], token_env: list
) -> dict:
    settings = app.stable_diffusion
    env = _model_env(app) + [
        {"name": "SD_HOST", "value": "0.0.0.0"},
        {"name": "SD_PORT", "value": str(PORT)},
        {"name": "SD_MAX_BATCH_SIZE", "value": str(settings.max_batch_size)},
        {"name": "SD_QUEUE_SIZE", "value": str(settings.queue_size)},
        # The drain ends before the kubelet's SIGKILL: grace minus the preStop sleep and a
        # margin for the exit itself, so a stuck call still ends in a clean exit and log.
        {"name": "SD_DRAIN_TIMEOUT_SECONDS", "value": str(drain_timeout_seconds(settings.termination_grace_period_seconds))},
        {"name": "SD_COMPILE", "value": settings.compile},
        {"name": "SD_PRECOMPILE", "value": settings.precompile},
        {"name": "SD_WARMUP_SIZES", "value": ",".join(settings.warmup_sizes)},
    ]
    if settings.extra_models:
        env.append({"name": "SD_MAX_LOADED_MODELS", "value": str(settings.max_loaded_models)})
    if app.cors_origins:
        env.append({"name": "SD_CORS_ORIGINS", "value": ",".join(app.cors_origins)})
    if app.ingress_http.host:
        # OpenAI `response_format: url` links point at the Ingress, not at the pod (and
        # never at the client's Host header). Without a host the address is only known
        # once the controller publishes it, so links then use the pod's address.
        scheme = "https" if app.ingress_http.tls is not None else "http"
        env.append({"name": "SD_PUBLIC_URL", "value": f"{scheme}://{app.ingress_http.host}"})
    # Any replica serves any OpenAI url link: the image's id names the pod that holds it
    # (its IP), and a replica fetches it from that pod if the headless Service's name
    # resolves to it (networking.peers_service). A single replica never fetches.
    env.append({"name": "SD_ADVERTISE_ADDRESS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    env.append({"name": "SD_PEERS", "value": names.peers_host})
    if app.ingress_http.trusted_proxies:
        env.append({"name": "SD_TRUSTED_PROXIES", "value": ",".join(app.ingress_http.trusted_proxies)})
    mounts = [{"name": "model-cache", "mountPath": CACHE_MOUNT}, tmp_mount()]
    if auth is not None:
        env.append({"name": "SD_AUTH_FILE", "value": AUTH_FILE})
        # With auth on, a starting replica reads the others' current checkpoint with this.
        env.append({"name": "SD_PEER_TOKEN_FILE", "value": PEER_TOKEN_FILE})
        mounts.append({"name": "htpasswd", "mountPath": AUTH_DIR, "readOnly": True})
    # The server may load a model again later (options / refresh-checkpoints).
    env += token_env
    if token_env:
        mounts.append({"name": "hf-token", "mountPath": HF_TOKEN_DIR, "readOnly": True})

    return {
        "name": "inference",
        "image": image.reference,
        "imagePullPolicy": image.pull_policy,
        "args": ["serve"],
        "ports": [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}],
        "env": env,
        "resources": _resources(app),
        # /healthz answers as soon as the process serves; loading a big model can take
        # minutes, so the startup budget is generous (10 s x startup_failure_threshold).
        "startupProbe": http_probe("/healthz", 10, settings.startup_failure_threshold, timeout=5),
        "livenessProbe": http_probe("/healthz", 15, 4, timeout=5),
        # 503 until the model is loaded and again while draining on SIGTERM.
        "readinessProbe": http_probe("/readyz", 5, 2, timeout=3),
        # Let endpoint removal reach the ingress before SIGTERM stops intake.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SLEEP_SECONDS)]}}},
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }


def deployment(
    app: AppConfig,
    names: Names,
    image: ImageRef,
    where: Placement,
    token: Optional[SecretKeyRef],
    auth: Optional[Auth],
    opts: pulumi.ResourceOptions,
) -> k8s.apps.v1.Deployment:
    settings = app.stable_diffusion
    token_env, token_mounts, token_volumes = _token_env_and_mount(token)
    volumes = [_cache_volume(app, names), tmp_volume(TMP_SIZE), *token_volumes]
    if auth is not None:
        volumes.append({
            "name": "htpasswd",
            "secret": {"secretName": names.auth_secret,
                       "items": [{"key": HTPASSWD_KEY, "path": "htpasswd"},
                                 {"key": PEER_TOKEN_KEY, "path": "peer-token"}],
                       "defaultMode": 0o440},
        })
    pod = pod_spec(
        names,
        [_server_container(app, names, image, auth, token_env)],
        volumes,
        image.pull_secret,
        initContainers=[_init_container(app, image, token_env, token_mounts)],
        terminationGracePeriodSeconds=settings.termination_grace_period_seconds,
        topologySpreadConstraints=[
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": names.selector_labels()},
            }
            for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
        ],
    )
    if where.node_selector:
        pod["nodeSelector"] = dict(where.node_selector)
    if where.tolerations:
        pod["tolerations"] = [dict(t) for t in where.tolerations]

    spec = {
        "selector": {"matchLabels": names.selector_labels()},
        # A pool that grows can take one surging pod; on fixed nodes a surge would wait
        # for a GPU that is not coming, so replace in place instead.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0} if where.elastic
            else {"maxSurge": 0, "maxUnavailable": 1},
        },
        "revisionHistoryLimit": 5,
        "template": {
            "metadata": {
                "labels": names.labels(),
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(PORT),
                    "prometheus.io/path": "/metrics",
                },
            },
            "spec": pod,
        },
    }
    if settings.autoscaling is None:
        spec["replicas"] = settings.replica_count
    # With autoscaling, KEDA's HPA owns spec.replicas: leaving it out means a later
    # `pulumi up` does not fight the autoscaler.
    return k8s.apps.v1.Deployment(
        f"{names.base}-deployment",
        metadata=names.metadata(names.deployment),
        spec=spec,
        opts=pulumi.ResourceOptions.merge(
            opts,
            # Model download + load can take well over the default 10 minutes.
            pulumi.ResourceOptions(custom_timeouts=pulumi.CustomTimeouts(create="30m", update="30m")),
        ),
    )


def disruption_budget(names: Names, opts: pulumi.ResourceOptions) -> k8s.policy.v1.PodDisruptionBudget:
    # maxUnavailable (not minAvailable): a drain may always take one replica, so a
    # single-replica deployment never blocks node maintenance forever.
    return k8s.policy.v1.PodDisruptionBudget(
        f"{names.base}-pdb",
        metadata=names.metadata(names.base),
        spec={"maxUnavailable": 1, "selector": {"matchLabels": names.selector_labels()}},
        opts=opts,
    )


def drain_timeout_seconds(grace_period_seconds: int) -> int:
    """`SD_DRAIN_TIMEOUT_SECONDS` for a pod with this termination grace period."""
    return max(1, grace_period_seconds - PRESTOP_SLEEP_SECONDS - DRAIN_EXIT_MARGIN_SECONDS)
