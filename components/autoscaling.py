"""Autoscaling: a KEDA `ScaledObject` on the server's queue depth.

Trigger 1 (always): Prometheus
`sum(sd_queue_depth{namespace="<ns>",pod=~"<deployment>-<hash>-<suffix>"}) or vector(0)`
(plus `job="<ns>/<name>"` with the PodMonitor) with `threshold = target_queue_depth`:
KEDA's HPA aims at that many queued requests per replica (desired = ceil(total queue /
target)). `sd_queue_depth` is the gauge the server exports at `/metrics`; the label names
are the ones the scrape writes (monitoring.py: the PodMonitor's generated relabelling and
the annotation-driven kubernetes-pods job both set `namespace` and `pod`). When nothing
scrapes the pods, `or vector(0)` reads 0: the component warns about such setups.

Trigger 2 (only with `min_replicas: 0`): at zero replicas no pod exports a queue, so a
second query wakes the Deployment: `autoscaling.activation_query`, or by default the
ingress controller's request rate for this backend. Its threshold is high so that it
only activates (0 -> 1) and never drives scale-out. Requests that arrive while no
replica is ready get a 503 from the ingress; clients should retry.

The default traefik query needs Traefik's `providers.kubernetesIngress.allowEmptyServices:
true`: by default Traefik drops the router of a Service without ready endpoints, so at
zero replicas requests get a 404 that is counted for no service, and the Deployment never
wakes. nginx keeps the location and counts the 503 under the Ingress's labels. The
component warns at `pulumi up` when it relies on the traefik default.

Scale-down is slow and one pod at a time (a GPU replica is expensive to bring back).
"""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from . import monitoring
from .config import AppConfig, Autoscaling
from .meta import Names

ACTIVATION_THRESHOLD_RPS = "1000"  # never reached: this trigger only activates
TRAEFIK_EMPTY_SERVICES_WARNING = (
    "autoscaling.min_replicas is 0 with the traefik ingress class and no "
    "autoscaling.activation_query: the default wake-up query counts Traefik's requests for "
    "the API's Service, which Traefik only routes (and counts) at zero replicas when its "
    "Kubernetes Ingress provider runs with allowEmptyServices=true "
    "(--providers.kubernetesingress.allowEmptyServices=true; Helm: "
    "providers.kubernetesIngress.allowEmptyServices: true). Without it requests get a 404 "
    "and the Deployment never scales up from zero: set that option, an activation_query, "
    "or min_replicas >= 1."
)


def queue_query(app: AppConfig, names: Names) -> str:
    return f"sum(sd_queue_depth{{{monitoring.series_matchers(app, names)}}}) or vector(0)"


def default_activation_query(app: AppConfig, names: Names) -> str:
    if app.ingress_http.class_name == "nginx":
        selector = f'ingress="{names.base}",service="{names.service}"'
        return f"sum(rate(nginx_ingress_controller_requests{{{selector}}}[2m])) or vector(0)"
    # Traefik names a Kubernetes Ingress backend `<namespace>-<service>-<port>@kubernetes`.
    selector = f'service=~"{names.namespace}-{names.service}-.*@kubernetes"'
    return f"sum(rate(traefik_service_requests_total{{{selector}}}[2m])) or vector(0)"


def wake_up_warning(app: AppConfig) -> Optional[str]:
    """The warning for a scale-to-zero setup whose wake-up depends on Traefik's settings."""
    scaling = app.stable_diffusion.autoscaling
    if (
        scaling is not None
        and scaling.min_replicas == 0
        and scaling.activation_query is None
        and app.ingress_http.class_name == "traefik"
    ):
        return TRAEFIK_EMPTY_SERVICES_WARNING
    return None


def triggers(app: AppConfig, names: Names, scaling: Autoscaling) -> list[dict]:
    result = [{
        "type": "prometheus",
        "name": "queue-depth",
        "metadata": {
            "serverAddress": scaling.prometheus_url,
            "query": queue_query(app, names),
            "threshold": str(scaling.target_queue_depth),
            "activationThreshold": "0",
        },
    }]
    if scaling.min_replicas == 0:
        result.append({
            "type": "prometheus",
            "name": "wake-from-zero",
            "metadata": {
                "serverAddress": scaling.prometheus_url,
                "query": scaling.activation_query or default_activation_query(app, names),
                "threshold": ACTIVATION_THRESHOLD_RPS,
                "activationThreshold": "0",
            },
        })
    return result


def scaled_object(app: AppConfig, names: Names, opts: pulumi.ResourceOptions):
    scaling = app.stable_diffusion.autoscaling
    if scaling is None:
        return None
    warning = wake_up_warning(app)
    if warning:
        pulumi.log.warn(warning)
    for warning in monitoring.scrape_warnings(app):
        pulumi.log.warn(warning)
    return k8s.apiextensions.CustomResource(
        f"{names.base}-scaledobject",
        api_version="keda.sh/v1alpha1",
        kind="ScaledObject",
        metadata=names.metadata(names.base, "autoscaling"),
        spec={
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": names.deployment},
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "pollingInterval": scaling.polling_interval,
            "cooldownPeriod": scaling.cooldown_period,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": scaling.cooldown_period,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
                        }
                    }
                }
            },
            "triggers": triggers(app, names, scaling),
        },
        opts=opts,
    )
