"""docs/component.md inputs -> objects: the Service, the Ingress, TLS, the NetworkPolicy and the PDB."""

from __future__ import annotations

import pytest

from .helpers import PROM, app, run, with_sd


def test_cluster_ip_service_with_stable_name():
    svc = run(app()).one("Service", "stable-diffusion")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8000.0, "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "stable-diffusion",
                                       "app.kubernetes.io/instance": "stable-diffusion"}


@pytest.mark.parametrize("autoscaling", [None, {"min_replicas": 0, "max_replicas": 2, "prometheus_url": PROM}])
def test_service_does_not_wait_for_pods(autoscaling):
    # pulumi-kubernetes waits up to 10 minutes for a Service's pods to be ready: longer
    # than a first GPU rollout may take, and forever at zero replicas. The Deployment's
    # own await (30 minutes) covers pod readiness.
    config = app() if autoscaling is None else with_sd(app(), autoscaling=autoscaling)
    for svc in run(config).find("Service"):  # the ClusterIP one and the peers' headless one
        assert svc["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"


def test_ingress_waits_for_a_published_address_only_without_a_host():
    # The address is only needed for external_api when no host is configured; waiting
    # for it fails `pulumi up` on controllers that publish none.
    with_host = run(app(ingress_http={"host": "sd.example.com"})).one("Ingress")
    assert with_host["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    without_host = run(app()).one("Ingress")
    assert "pulumi.com/skipAwait" not in without_host["metadata"]["annotations"]


def test_traefik_ingress_without_tls():
    ing = run(app(ingress_http={"host": "sd.example.com"})).one("Ingress")
    assert ing["spec"]["ingressClassName"] == "traefik"
    assert ing["metadata"]["annotations"] == {"traefik.ingress.kubernetes.io/router.entrypoints": "web",
                                              "pulumi.com/skipAwait": "true"}
    rule = ing["spec"]["rules"][0]
    assert rule["host"] == "sd.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "stable-diffusion", "port": {"name": "http"}}
    assert "tls" not in ing["spec"]


def test_nginx_ingress_body_size_and_timeouts():
    ing = run(app(ingress_http={"class_name": "nginx", "max_body_size": "100m", "timeout_seconds": 900})).one("Ingress")
    annotations = ing["metadata"]["annotations"]
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "100m"
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "900"
    assert annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "900"


def test_tls_from_existing_secret():
    ing = run(app(ingress_http={"host": "sd.example.com", "tls": {"secret_name": "sd-cert"}})).one("Ingress")
    assert ing["spec"]["tls"] == [{"hosts": ["sd.example.com"], "secretName": "sd-cert"}]
    assert ing["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.entrypoints"] == "websecure"
    assert ing["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.tls"] == "true"
    assert "cert-manager.io/cluster-issuer" not in ing["metadata"]["annotations"]


def test_tls_from_cert_manager_cluster_issuer():
    ing = run(app(ingress_http={"host": "sd.example.com", "class_name": "nginx",
                                "tls": {"cluster_issuer": "letsencrypt"}})).one("Ingress")
    assert ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert ing["spec"]["tls"] == [{"hosts": ["sd.example.com"], "secretName": "stable-diffusion-tls"}]


def test_network_policy_admits_only_controller_and_allowed_namespaces():
    config = with_sd(app(ingress_http={"class_name": "nginx"}, network_policy={"allowed_namespaces": ["apps"]}),
                     autoscaling={"max_replicas": 2, "prometheus_url": PROM})
    policy = run(config).one("NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    namespaces, replicas = rule["from"]
    expression = namespaces["namespaceSelector"]["matchExpressions"][0]
    assert expression["key"] == "kubernetes.io/metadata.name"
    assert expression["values"] == ["apps", "ingress-nginx", "monitoring"]
    assert rule["ports"] == [{"port": 8000.0, "protocol": "TCP"}]
    # The replicas themselves (same namespace): they fetch each other's url images.
    assert replicas == {"podSelector": {"matchLabels": policy["spec"]["podSelector"]["matchLabels"]}}


def test_network_policy_can_be_turned_off():
    assert run(app(network_policy={"enabled": False})).find("NetworkPolicy") == []


def test_pod_disruption_budget_never_blocks_a_drain():
    pdb = run(app()).one("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1.0
    assert "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "stable-diffusion"
