"""StableStudio beside the API: Deployment, Service and NetworkPolicy (`stablestudio.enabled`).

StableStudio is a static single-page app: a web server in the user's image serves its
built files, and the browser then calls the API (A1111 `/sdapi/v1`) itself. It is
served at `stablestudio.path` (`/stablestudio`) on the API's Ingress host, by a second
path rule on the same Ingress (networking.py): the longest matching prefix wins on both
traefik and nginx, so `/stablestudio/...` reaches StableStudio and everything else the
API. The path is passed through unchanged (no rewrite, so no controller-specific
annotations or CRDs): the image must serve the app under that path, i.e. be built with
that base (`vite build --base=/stablestudio/`) and place its files there.

The pods are restricted like the API's (pods.py): uid 10001, read-only root filesystem
with a writable `/tmp` emptyDir (nginx-unprivileged keeps its pid and temp files there). The
external origin (`https://host`) is added to the API's CORS origins (config/app.py,
`AppConfig.cors_origins`); the API's own auth still applies to every call StableStudio
makes.
"""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from .config import AppConfig
from .meta import PORT_NAME, Names
from .networking import from_namespaces_only
from .pods import container_security_context, guaranteed, http_probe, pod_spec, tmp_mount, tmp_volume

COMPONENT = "stablestudio"
EPHEMERAL_STORAGE = "256Mi"
TMP_SIZE = "64Mi"


def _resources(app: AppConfig) -> dict:
    studio = app.stablestudio
    return guaranteed({"cpu": studio.cpu, "memory": studio.memory, "ephemeral-storage": EPHEMERAL_STORAGE})


def _container(app: AppConfig) -> dict:
    studio = app.stablestudio
    image = studio.image
    return {
        "name": COMPONENT,
        "image": image.reference,
        "imagePullPolicy": image.pull_policy,
        "ports": [{"name": PORT_NAME, "containerPort": studio.port, "protocol": "TCP"}],
        "resources": _resources(app),
        "readinessProbe": http_probe(f"{studio.path}/", 5, 3, timeout=3),
        "livenessProbe": http_probe(f"{studio.path}/", 15, 4, timeout=3),
        "securityContext": container_security_context(),
        "volumeMounts": [tmp_mount()],
    }


def deployment(app: AppConfig, names: Names, opts: pulumi.ResourceOptions) -> Optional[k8s.apps.v1.Deployment]:
    studio = app.stablestudio
    if not studio.enabled:
        return None
    pod = pod_spec(names, [_container(app)], [tmp_volume(TMP_SIZE)], studio.image.pull_secret)
    return k8s.apps.v1.Deployment(
        f"{names.base}-stablestudio-deployment",
        metadata=names.metadata(names.stablestudio, COMPONENT),
        spec={
            "replicas": studio.replica_count,
            "selector": {"matchLabels": names.stablestudio_selector_labels()},
            "revisionHistoryLimit": 5,
            "template": {"metadata": {"labels": names.labels(COMPONENT)}, "spec": pod},
        },
        opts=opts,
    )


def service(app: AppConfig, names: Names, opts: pulumi.ResourceOptions) -> Optional[k8s.core.v1.Service]:
    if not app.stablestudio.enabled:
        return None
    return k8s.core.v1.Service(
        f"{names.base}-stablestudio-service",
        metadata=names.metadata(names.stablestudio, COMPONENT),
        spec={
            "type": "ClusterIP",
            "selector": names.stablestudio_selector_labels(),
            "ports": [{"name": PORT_NAME, "port": app.stablestudio.port, "targetPort": PORT_NAME,
                       "protocol": "TCP"}],
        },
        opts=opts,
    )


def network_policy(app: AppConfig, names: Names, opts: pulumi.ResourceOptions):
    """Only the ingress controller's namespace reaches StableStudio's pods."""
    if not (app.stablestudio.enabled and app.network_policy.enabled):
        return None
    return k8s.networking.v1.NetworkPolicy(
        f"{names.base}-stablestudio-netpol",
        metadata=names.metadata(names.stablestudio, COMPONENT),
        spec=from_namespaces_only(
            names.stablestudio_selector_labels(), [app.ingress_http.ingress_controller_namespace], app.stablestudio.port
        ),
        opts=opts,
    )
