"""Networking: the ClusterIP Service, the peers' headless Service, the Ingress, and the
NetworkPolicy.

Auth is enforced by the server itself (htpasswd file, `SD_AUTH_FILE`), so the gate holds
for in-cluster callers too and works the same behind either ingress class; the Ingress
only carries transport settings:

- nginx: `proxy-body-size` (base64 images are large) and `proxy-read-timeout` /
  `proxy-send-timeout` (a generation can take minutes);
- traefik: no per-Ingress settings are needed: Traefik buffers no bodies and sets no
  backend response timeout unless configured to; its entrypoint `readTimeout` (60 s in
  v3) bounds only how long a client may take to *send* a request. The router is bound to
  the `websecure` entrypoint with TLS, `web` without.

TLS: `{secret_name}` uses an existing certificate Secret; `{cluster_issuer}` adds
cert-manager's `cert-manager.io/cluster-issuer` annotation and lets it fill `<name>-tls`.

With `stablestudio.enabled` the same Ingress gets a second path rule, `/stablestudio`
(Prefix) -> StableStudio's Service (stablestudio.py); the longest prefix wins.

The NetworkPolicy admits traffic to the API port only from the ingress controller's
namespace (`ingress_http.controller_namespace`: k3s and Rancher Desktop run their built-in
Traefik in `kube-system`), `network_policy.allowed_namespaces`, and Prometheus's namespace
(monitoring.py: `monitoring.namespace`, else the one `autoscaling.prometheus_url` names),
which scrapes `/metrics`, and from the API's own pods: replicas ask each other (`SD_PEERS`,
the headless `<name>-peers` Service) for OpenAI url images, StableStudio's history, the
current checkpoint, and A1111's progress, interrupt and skip. Kubelet probes are not
subject to NetworkPolicy.
"""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from . import monitoring
from .args import ApiEndpoint
from .config import AppConfig, TlsClusterIssuer, TlsSecret
from .meta import PORT, PORT_NAME, Names

NGINX = "nginx.ingress.kubernetes.io"
TRAEFIK = "traefik.ingress.kubernetes.io"


# pulumi-kubernetes' Service await waits (10 minutes by default) until the selected pods
# are ready. The Service is created beside the Deployment, whose pods can need longer
# than that on a first `pulumi up` (GPU node, multi-GB image, model download and load),
# and with `min_replicas: 0` there are no pods at all, so any later update of the Service
# would wait and fail. The Deployment's own await (30 minutes) already covers pod
# readiness, so the Service is ready once it exists.
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}


def service(names: Names, opts: pulumi.ResourceOptions) -> k8s.core.v1.Service:
    return k8s.core.v1.Service(
        f"{names.base}-service",
        metadata=names.metadata(names.service, annotations=dict(SKIP_AWAIT)),
        spec={
            "type": "ClusterIP",
            "selector": names.selector_labels(),
            "ports": [{"name": PORT_NAME, "port": PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
        opts=opts,
    )


def peers_service(names: Names, opts: pulumi.ResourceOptions) -> k8s.core.v1.Service:
    """A headless Service: its DNS name resolves to every API pod's IP, which is how a
    replica knows its peers (`SD_PEERS`). Addresses of pods that are not ready are
    published too: a replica still warming up or draining holds images whose links it
    handed out, and its peers must still be able to fetch them."""
    return k8s.core.v1.Service(
        f"{names.base}-peers-service",
        metadata=names.metadata(names.peers_service, annotations=dict(SKIP_AWAIT)),
        spec={
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": names.selector_labels(),
            "ports": [{"name": PORT_NAME, "port": PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
        opts=opts,
    )


def ingress_annotations(app: AppConfig) -> dict[str, str]:
    http = app.ingress_http
    annotations: dict[str, str] = {}
    if http.class_name == "nginx":
        annotations[f"{NGINX}/proxy-body-size"] = http.max_body_size
        annotations[f"{NGINX}/proxy-read-timeout"] = str(http.timeout_seconds)
        annotations[f"{NGINX}/proxy-send-timeout"] = str(http.timeout_seconds)
    else:
        annotations[f"{TRAEFIK}/router.entrypoints"] = "websecure" if http.tls else "web"
        if http.tls:
            annotations[f"{TRAEFIK}/router.tls"] = "true"
    if isinstance(http.tls, TlsClusterIssuer):
        annotations["cert-manager.io/cluster-issuer"] = http.tls.cluster_issuer
    annotations.update(http.annotations)
    return annotations


def tls_secret_name(app: AppConfig, names: Names) -> Optional[str]:
    tls = app.ingress_http.tls
    if isinstance(tls, TlsSecret):
        return tls.secret_name
    if isinstance(tls, TlsClusterIssuer):
        return names.tls_secret
    return None


def ingress(app: AppConfig, names: Names, opts: pulumi.ResourceOptions) -> k8s.networking.v1.Ingress:
    http = app.ingress_http
    paths = [{
        "path": "/",
        "pathType": "Prefix",
        "backend": {"service": {"name": names.service, "port": {"name": PORT_NAME}}},
    }]
    if app.stablestudio.enabled:
        # Longest prefix wins (Kubernetes Ingress semantics, traefik and nginx alike).
        paths.insert(0, {
            "path": app.stablestudio.path,
            "pathType": "Prefix",
            "backend": {"service": {"name": names.stablestudio, "port": {"name": PORT_NAME}}},
        })
    rule: dict = {"http": {"paths": paths}}
    if http.host:
        rule["host"] = http.host
    spec: dict = {"ingressClassName": http.class_name, "rules": [rule]}
    secret_name = tls_secret_name(app, names)
    if secret_name:
        spec["tls"] = [{"hosts": [http.host], "secretName": secret_name}]
    # pulumi-kubernetes waits (10 minutes) for the controller to publish an address in the
    # Ingress status; controllers without a published service never do (Traefik charts
    # before v33, NodePort/hostPort setups), which fails `pulumi up`. Only `external_api`
    # without a configured host needs that address: with a host, do not wait for it.
    annotations = {**(SKIP_AWAIT if http.host else {}), **ingress_annotations(app)}
    return k8s.networking.v1.Ingress(
        f"{names.base}-ingress",
        metadata=names.metadata(names.base, annotations=annotations),
        spec=spec,
        opts=opts,
    )


def allowed_namespaces(app: AppConfig) -> list[str]:
    namespaces = [app.ingress_http.ingress_controller_namespace, *app.network_policy.allowed_namespaces]
    prometheus = monitoring.prometheus_namespace(app)
    if prometheus:
        namespaces.append(prometheus)
    return sorted(set(namespaces))


def from_namespaces_only(
    pod_labels: dict[str, str], namespaces: list[str], port: int, *, from_each_other: bool = False
) -> dict:
    """A NetworkPolicy spec: the selected pods' `port` is reachable from `namespaces` only
    (and, `from_each_other`, from the selected pods themselves)."""
    sources: list[dict] = [{
        "namespaceSelector": {
            "matchExpressions": [{
                "key": "kubernetes.io/metadata.name",
                "operator": "In",
                "values": namespaces,
            }]
        }
    }]
    if from_each_other:
        sources.append({"podSelector": {"matchLabels": pod_labels}})  # the policy's own namespace
    return {
        "podSelector": {"matchLabels": pod_labels},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": sources, "ports": [{"port": port, "protocol": "TCP"}]}],
    }


def network_policy(app: AppConfig, names: Names, opts: pulumi.ResourceOptions):
    if not app.network_policy.enabled:
        return None
    return k8s.networking.v1.NetworkPolicy(
        f"{names.base}-netpol",
        metadata=names.metadata(names.base),
        # The replicas ask each other (SD_PEERS): url images, history, the current checkpoint,
        # progress, interrupt and skip.
        spec=from_namespaces_only(names.selector_labels(), allowed_namespaces(app), PORT, from_each_other=True),
        opts=opts,
    )


def external_api(app: AppConfig, ing: k8s.networking.v1.Ingress) -> pulumi.Output[ApiEndpoint]:
    """{host, port, protocol, base_path, url} as clients outside the cluster reach it."""
    http = app.ingress_http
    tls = http.tls is not None
    protocol, port = ("https", 443) if tls else ("http", 80)

    def shape(host: Optional[str]) -> ApiEndpoint:
        return {
            "host": host,
            "port": port,
            "protocol": protocol,
            "base_path": "/",
            "url": f"{protocol}://{host}/" if host else None,
        }

    if http.host:
        return pulumi.Output.from_input(shape(http.host))

    # No configured host: the address the controller published in the Ingress status
    # (pulumi-kubernetes waits for it). Absent under test mocks.
    def published(status) -> Optional[str]:
        entries = (getattr(getattr(status, "load_balancer", None), "ingress", None) or []) if status else []
        for entry in entries:
            address = getattr(entry, "hostname", None) or getattr(entry, "ip", None)
            if address:
                return address
        return None

    return ing.status.apply(lambda status: shape(published(status)))


def internal_api(names: Names) -> ApiEndpoint:
    host = names.internal_host
    return {
        "host": host,
        "port": PORT,
        "protocol": "http",
        "base_path": "/",
        "url": f"http://{host}:{PORT}/",
    }
