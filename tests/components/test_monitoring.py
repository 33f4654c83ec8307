"""Prometheus can scrape what autoscaling queries: `monitoring` drives the NetworkPolicy,
the PodMonitor and the KEDA query's label matchers, and `pulumi up` warns where nothing
would be scraped (the query's `or vector(0)` would read 0 forever)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from components.config import AppConfigError, parse_app_config
from infra import render

from .helpers import APP_KEY, app, container, deployment, run, with_sd

NS = "sd"
NAME = "stable-diffusion"
OPERATOR_PROM = "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"
POD_MONITOR = {"namespace": "monitoring", "pod_monitor": True, "labels": {"release": "kube-prometheus-stack"}}


def _admitted(result) -> list[str]:
    (rule,) = result.one("NetworkPolicy", NAME)["spec"]["ingress"]
    peer, _replicas = rule["from"]
    return peer["namespaceSelector"]["matchExpressions"][0]["values"]


def _warnings(monkeypatch) -> list[str]:
    import pulumi

    seen: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: seen.append(message))
    return seen


# --- the NetworkPolicy admits Prometheus --------------------------------------------------


def test_monitoring_namespace_is_admitted_without_autoscaling():
    # Dashboards and alerts scrape /metrics too: not only when KEDA is configured.
    assert "monitoring" in _admitted(run(app(monitoring={"namespace": "monitoring"})))


def test_monitoring_namespace_wins_over_the_query_endpoint_namespace():
    # KEDA may query a Thanos in another namespace; only the scraper's is admitted.
    config = with_sd(app(monitoring={"namespace": "prometheus"}),
                     autoscaling={"prometheus_url": "http://thanos-query.thanos.svc:9090"})
    assert _admitted(run(config)) == ["prometheus", "traefik"]


def test_prometheus_url_namespace_still_admitted_without_monitoring_namespace():
    config = with_sd(app(), autoscaling={"prometheus_url": "http://prometheus-server.metrics.svc:80"})
    assert "metrics" in _admitted(run(config))


# --- the PodMonitor -----------------------------------------------------------------------


def test_pod_monitor_selects_the_api_pods_on_their_metrics_port():
    result = run(app(namespace=NS, monitoring={**POD_MONITOR, "interval": "30s"}))
    monitor = result.one("PodMonitor", NAME)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NS
    # The label the Prometheus resource's podMonitorSelector matches, beside our own.
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/instance"] == NAME
    spec = monitor["spec"]
    assert set(spec) == {"selector", "namespaceSelector", "podMetricsEndpoints"}
    assert spec["namespaceSelector"] == {"matchNames": [NS]}
    pod_labels = deployment(result)["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint == {"port": "http", "path": "/metrics", "interval": "30s"}
    # The port name is the inference container's metrics port.
    ports = {p["name"]: p["containerPort"] for p in container(result)["ports"]}
    assert ports[endpoint["port"]] == 8000


def test_pod_monitor_does_not_select_stablestudio():
    result = run(app(monitoring=POD_MONITOR, ingress_http={"host": "sd.example.com"},
                     stablestudio={"enabled": True, "image": {"repository": "ghcr.io/acme/ss", "tag": "1"}}))
    selector = result.one("PodMonitor")["spec"]["selector"]["matchLabels"]
    studio = result.one("Deployment", f"{NAME}-stablestudio")["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= studio.items()


def test_no_pod_monitor_by_default():
    assert run(app()).find("PodMonitor") == []


def test_pod_monitor_is_rendered_as_a_custom_resource(tmp_path):
    values = {APP_KEY: json.dumps(app(monitoring=POD_MONITOR))}
    paths = render.render(values, [], "pm", tmp_path)
    (path,) = [p for p in paths if "podmonitor" in p.name]
    assert path.name == f"95-podmonitor-{NAME}.yaml"  # custom resources go last
    assert yaml.safe_load(path.read_text())["kind"] == "PodMonitor"


@pytest.mark.parametrize("monitoring, path, words", [
    ({"labels": {"release": "x"}}, "stable-diffusion:app.monitoring", "set monitoring.pod_monitor: true"),
    ({"interval": "30s"}, "stable-diffusion:app.monitoring", "monitoring.interval only apply"),
    ({"pod_monitor": True, "interval": "30 seconds"}, "stable-diffusion:app.monitoring.interval", "is not"),
    ({"pod_monitor": True, "labels": {"bad key!": "x"}}, "stable-diffusion:app.monitoring.labels", "is not"),
    ({"namespace": "Monitoring"}, "stable-diffusion:app.monitoring.namespace", "DNS label"),
    ({"podmonitor": True}, "stable-diffusion:app.monitoring.podmonitor", "unknown key"),
])
def test_bad_monitoring_inputs_name_the_field(monitoring, path, words):
    with pytest.raises(AppConfigError) as caught:
        parse_app_config(app(monitoring=monitoring))
    assert path in str(caught.value) and words in str(caught.value), str(caught.value)


# --- the KEDA query reads the series the scrape writes ------------------------------------


def _query(result) -> str:
    return result.one("ScaledObject")["spec"]["triggers"][0]["metadata"]["query"]


def _matchers(query: str) -> dict[str, tuple[str, str]]:
    inside = re.search(r"sd_queue_depth\{(.*)\}\)", query).group(1)
    return {name: (op, value) for name, op, value in re.findall(r'(\w+)(=~|=)"([^"]*)"', inside)}


def test_query_with_pod_monitor_filters_on_the_labels_the_operator_writes():
    result = run(with_sd(app(namespace=NS, monitoring=POD_MONITOR),
                         autoscaling={"max_replicas": 3, "prometheus_url": OPERATOR_PROM}))
    matchers = _matchers(_query(result))
    monitor = result.one("PodMonitor")
    # The operator's relabelling: namespace <- pod namespace, pod <- pod name,
    # job <- "<PodMonitor namespace>/<PodMonitor name>".
    assert matchers["namespace"] == ("=", NS)
    assert matchers["job"] == ("=", f"{monitor['metadata']['namespace']}/{monitor['metadata']['name']}")
    op, pattern = matchers["pod"]
    assert op == "=~"
    # PromQL regexes are anchored: a pod of this Deployment matches, StableStudio's does not.
    assert re.fullmatch(pattern, f"{deployment(result)['metadata']['name']}-7d9c6b5f4-x2x4k")
    assert not re.fullmatch(pattern, f"{NAME}-stablestudio-7d9c6b5f4-x2x4k")


def test_query_without_pod_monitor_has_no_job_filter():
    # The annotation job's name is the Prometheus install's choice: only namespace and pod.
    result = run(with_sd(app(namespace=NS, monitoring={"namespace": "monitoring"}),
                         autoscaling={"max_replicas": 3, "prometheus_url": "http://prometheus-server.monitoring.svc"}))
    assert set(_matchers(_query(result))) == {"namespace", "pod"}


# --- warnings: autoscaling on, nothing scrapes ---------------------------------------------


def test_warns_when_no_prometheus_namespace_is_admitted(monkeypatch):
    seen = _warnings(monkeypatch)
    run(with_sd(app(), autoscaling={"min_replicas": 1, "prometheus_url": "http://10.0.0.5:9090"}))
    assert any("monitoring.namespace" in w and "vector(0)" in w for w in seen), seen


def test_warns_when_the_operator_would_ignore_the_annotations(monkeypatch):
    seen = _warnings(monkeypatch)
    run(with_sd(app(), autoscaling={"min_replicas": 1, "prometheus_url": OPERATOR_PROM}))
    assert any("monitoring.pod_monitor: true" in w for w in seen), seen


@pytest.mark.parametrize("config", [
    with_sd(app(monitoring=POD_MONITOR), autoscaling={"min_replicas": 1, "prometheus_url": OPERATOR_PROM}),
    with_sd(app(monitoring={"namespace": "monitoring"}),
            autoscaling={"min_replicas": 1, "prometheus_url": "http://10.0.0.5:9090"}),
    with_sd(app(), autoscaling={"min_replicas": 1, "prometheus_url": "http://prometheus-server.monitoring.svc"}),
    with_sd(app(network_policy={"enabled": False}),
            autoscaling={"min_replicas": 1, "prometheus_url": "http://10.0.0.5:9090"}),
], ids=["pod-monitor", "monitoring-namespace", "namespace-from-url", "no-network-policy"])
def test_no_scrape_warning_when_prometheus_can_scrape(monkeypatch, config):
    seen = _warnings(monkeypatch)
    run(config)
    assert not any("vector(0)" in w or "reads 0" in w for w in seen), seen


def test_prod_stack_scrapes_with_a_pod_monitor_its_prometheus_selects():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    prod = yaml.safe_load((root / "Pulumi.prod.yaml").read_text())["config"][APP_KEY]
    result = run(prod, extra_config={"stable-diffusion:hfToken": "x"}, secret_keys=["stable-diffusion:hfToken"])
    monitor = result.one("PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert "monitoring" in _admitted(result)
    assert 'job="stable-diffusion/stable-diffusion"' in _query(result)
