"""Monitoring: how Prometheus reaches and scrapes the API's `/metrics`.

Two ways, both declared from the `monitoring` input:

- Annotations: every API pod carries `prometheus.io/scrape|port|path` (workload.py), which
  a Prometheus with the annotation-driven `kubernetes-pods` job reads (the
  prometheus-community `prometheus` chart ships it; it labels each series with the pod's
  `namespace` and `pod`).
- A `monitoring.coreos.com/v1` PodMonitor (`monitoring.pod_monitor: true`), for the
  Prometheus Operator (kube-prometheus-stack), which ignores those annotations. The
  operator's generated scrape config labels each series with `namespace`, `pod`,
  `container`, `endpoint` (the port name) and `job: <PodMonitor namespace>/<PodMonitor
  name>`. A Prometheus resource only loads PodMonitors its `podMonitorSelector` matches:
  `monitoring.labels` carries the labels it selects on (kube-prometheus-stack: `release:
  <its release name>`, unless installed with podMonitorSelectorNilUsesHelmValues=false).

Either way Prometheus's pods must pass the API's NetworkPolicy: its namespace is
`monitoring.namespace`, or else the namespace of the `autoscaling.prometheus_url` Service.

The autoscaling query (autoscaling.py) filters on exactly those labels, `namespace` and
`pod` (and `job` with the PodMonitor, so that a Prometheus that also scrapes by annotation
does not count every queue twice). Its `or vector(0)` reads 0 when nothing is scraped, so
the component warns at `pulumi up` about setups where nothing can be.
"""

from __future__ import annotations

from typing import Optional
from urllib.parse import urlparse

import pulumi
import pulumi_kubernetes as k8s

from .config import AppConfig
from .meta import PORT_NAME, Names

METRICS_PATH = "/metrics"

NO_PROMETHEUS_NAMESPACE_WARNING = (
    "autoscaling reads sd_queue_depth from Prometheus, but the NetworkPolicy admits no "
    "Prometheus namespace (monitoring.namespace is unset and autoscaling.prometheus_url "
    "names no <service>.<namespace> host): Prometheus cannot scrape the pods, the query's "
    "`or vector(0)` reads 0, and the Deployment never scales out. Set monitoring.namespace "
    "to Prometheus's namespace."
)
OPERATOR_IGNORES_ANNOTATIONS_WARNING = (
    "autoscaling.prometheus_url looks like a Prometheus Operator install ({host}), which "
    "ignores the pods' prometheus.io annotations: without a PodMonitor nothing scrapes the "
    "API, the queue-depth query reads 0 and the Deployment never scales out. Set "
    "monitoring.pod_monitor: true (and monitoring.labels to what the Prometheus resource's "
    "podMonitorSelector matches, e.g. release: kube-prometheus-stack)."
)
# Service names the Prometheus Operator (`prometheus-operated`) and kube-prometheus-stack
# (`<release>-kube-prometheus-prometheus`, `kube-prometheus-stack-prometheus`) create.
_OPERATOR_SERVICE_MARKERS = ("prometheus-operated", "kube-prometheus")


def namespace_from_url(url: str) -> Optional[str]:
    """`http://prometheus-server.monitoring.svc:9090` -> `monitoring`."""
    host = urlparse(url).hostname or ""
    parts = host.split(".")
    if len(parts) >= 2 and (len(parts) == 2 or parts[2] == "svc"):
        return parts[1]
    return None


def prometheus_namespace(app: AppConfig) -> Optional[str]:
    """The namespace Prometheus scrapes from: admitted by the API's NetworkPolicy."""
    if app.monitoring.namespace:
        return app.monitoring.namespace
    scaling = app.stable_diffusion.autoscaling
    if scaling is not None:
        return namespace_from_url(scaling.prometheus_url)
    return None


def pod_monitor_name(names: Names) -> str:
    return names.base


def scrape_job(app: AppConfig, names: Names) -> Optional[str]:
    """The `job` label of the series the PodMonitor produces (None without one)."""
    if not app.monitoring.pod_monitor:
        return None
    return f"{names.namespace}/{pod_monitor_name(names)}"


def series_matchers(app: AppConfig, names: Names) -> str:
    """PromQL label matchers selecting this Deployment's series, by the scrape's own labels."""
    # Pods of a Deployment are named <deployment>-<pod-template-hash>-<suffix>.
    matchers = [
        f'namespace="{names.namespace}"',
        f'pod=~"{names.deployment}-[a-z0-9]+-[a-z0-9]+"',
    ]
    job = scrape_job(app, names)
    if job:
        matchers.append(f'job="{job}"')
    return ",".join(matchers)


def scrape_warnings(app: AppConfig) -> list[str]:
    """Why autoscaling would read 0 forever; empty when Prometheus can scrape the pods."""
    scaling = app.stable_diffusion.autoscaling
    if scaling is None:
        return []
    warnings = []
    if app.network_policy.enabled and prometheus_namespace(app) is None:
        warnings.append(NO_PROMETHEUS_NAMESPACE_WARNING)
    host = urlparse(scaling.prometheus_url).hostname or ""
    service = host.split(".")[0]
    if not app.monitoring.pod_monitor and any(m in service for m in _OPERATOR_SERVICE_MARKERS):
        warnings.append(OPERATOR_IGNORES_ANNOTATIONS_WARNING.format(host=host))
    return warnings


def pod_monitor(app: AppConfig, names: Names, opts: pulumi.ResourceOptions):
    """The PodMonitor (monitoring.coreos.com/v1) of the API pods, when asked for."""
    settings = app.monitoring
    if not settings.pod_monitor:
        return None
    metadata = names.metadata(pod_monitor_name(names))
    metadata["labels"] = {**settings.labels, **metadata["labels"]}
    return k8s.apiextensions.CustomResource(
        f"{names.base}-podmonitor",
        api_version="monitoring.coreos.com/v1",
        kind="PodMonitor",
        metadata=metadata,
        spec={
            "selector": {"matchLabels": names.selector_labels()},
            "namespaceSelector": {"matchNames": [names.namespace]},
            "podMetricsEndpoints": [{
                "port": PORT_NAME,
                "path": METRICS_PATH,
                "interval": settings.interval,
            }],
        },
        opts=opts,
    )
