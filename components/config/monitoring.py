"""`monitoring`: how Prometheus scrapes the API's `/metrics` (autoscaling reads what it scrapes)."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import Field, model_validator

from .base import LABEL_KEY, LABEL_VALUE, PROMETHEUS_DURATION, ConfigModel, DnsLabel


class Monitoring(ConfigModel):
    """How Prometheus scrapes the API's /metrics (autoscaling reads what it scrapes)."""

    namespace: Optional[DnsLabel] = None
    """Prometheus's namespace, admitted by the NetworkPolicy on the API port. Default: the namespace of `autoscaling.prometheus_url`'s Service, when it names one."""
    pod_monitor: bool = False
    """Declare a `monitoring.coreos.com/v1` PodMonitor for the Prometheus Operator (e.g. kube-prometheus-stack, which ignores the pods' `prometheus.io` annotations)."""
    labels: dict[Annotated[str, Field(pattern=LABEL_KEY, max_length=317)],
                 Annotated[str, Field(pattern=LABEL_VALUE, max_length=63)]] = {}
    """Extra labels on the PodMonitor, for the Prometheus resource's `podMonitorSelector` (kube-prometheus-stack: `release: <its release name>`)."""
    interval: Annotated[str, Field(pattern=PROMETHEUS_DURATION, min_length=2)] = "15s"
    """The PodMonitor's scrape interval."""

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
