"""docs/component.md inputs -> objects: KEDA autoscaling on the queue depth, and scale to zero."""

from __future__ import annotations

import pytest

from . import helpers
from .helpers import PROM, app, pulumi_warnings, run, with_sd


def test_no_autoscaling_no_scaled_object():
    assert run(app()).find("ScaledObject") == []


def test_keda_scaled_object_on_queue_depth():
    result = run(with_sd(app(namespace="sd"), autoscaling={
        "min_replicas": 1, "max_replicas": 5, "target_queue_depth": 6, "prometheus_url": PROM}))
    so = result.one("ScaledObject")
    spec = so["spec"]
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert spec["scaleTargetRef"]["name"] == helpers.deployment(result)["metadata"]["name"]
    assert spec["minReplicaCount"] == 1.0 and spec["maxReplicaCount"] == 5.0
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["serverAddress"] == PROM
    # The labels the annotation-driven kubernetes-pods job writes (no PodMonitor here).
    assert trigger["metadata"]["query"] == (
        'sum(sd_queue_depth{namespace="sd",pod=~"stable-diffusion-[a-z0-9]+-[a-z0-9]+"}) or vector(0)'
    )
    assert trigger["metadata"]["threshold"] == "6"
    # KEDA owns the replica count: Pulumi does not set it.
    assert "replicas" not in helpers.deployment(result)["spec"]


def test_scale_to_zero_adds_a_wake_up_trigger():
    result = run(with_sd(app(), autoscaling={"min_replicas": 0, "max_replicas": 3, "prometheus_url": PROM}))
    spec = result.one("ScaledObject")["spec"]
    assert spec["minReplicaCount"] == 0.0
    names = [t["name"] for t in spec["triggers"]]
    assert names == ["queue-depth", "wake-from-zero"]
    assert "traefik_service_requests_total" in spec["triggers"][1]["metadata"]["query"]


def test_scale_to_zero_on_traefik_warns_about_allow_empty_services(monkeypatch):
    # Traefik drops the route of a Service without endpoints unless allowEmptyServices is
    # on: at zero replicas no request is counted for the service and nothing wakes it.
    seen = pulumi_warnings(monkeypatch)
    run(with_sd(app(), autoscaling={"min_replicas": 0, "max_replicas": 3, "prometheus_url": PROM}))
    assert any("allowEmptyServices" in w for w in seen), seen


@pytest.mark.parametrize("ingress_http, autoscaling", [
    ({"class_name": "nginx"}, {"min_replicas": 0}),
    ({"class_name": "traefik"}, {"min_replicas": 0, "activation_query": "sum(up)"}),
    ({"class_name": "traefik"}, {"min_replicas": 1}),
])
def test_no_wake_up_warning_when_it_does_not_depend_on_traefik(monkeypatch, ingress_http, autoscaling):
    seen = pulumi_warnings(monkeypatch)
    run(with_sd(app(ingress_http=ingress_http),
                autoscaling={"max_replicas": 3, "prometheus_url": PROM, **autoscaling}))
    assert not any("allowEmptyServices" in w for w in seen), seen


def test_scale_to_zero_with_custom_activation_query():
    result = run(with_sd(app(), autoscaling={"min_replicas": 0, "max_replicas": 3, "prometheus_url": PROM,
                                            "activation_query": "sum(up)"}))
    assert result.one("ScaledObject")["spec"]["triggers"][1]["metadata"]["query"] == "sum(up)"
