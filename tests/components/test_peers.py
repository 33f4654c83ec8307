"""Any replica serves any OpenAI url link (docs/api.md): the replicas find each other
through a headless Service, each knows its own pod IP, and the NetworkPolicy lets them
reach each other's API port."""

from __future__ import annotations

from inference.__main__ import parse

from .helpers import app, container, deployment, env, run, with_sd

PROM = "http://prometheus-server.monitoring.svc:80"


def test_a_headless_service_resolves_to_every_replica_ready_or_not():
    result = run(app(namespace="sd"))
    api = result.one("Service", "stable-diffusion")
    peers = result.one("Service", "stable-diffusion-peers")
    assert peers["metadata"]["namespace"] == "sd"
    assert peers["spec"]["clusterIP"] == "None"
    # Warming or draining replicas hold images whose links they handed out.
    assert peers["spec"]["publishNotReadyAddresses"] is True
    assert peers["spec"]["selector"] == api["spec"]["selector"]
    assert peers["spec"]["ports"] == api["spec"]["ports"]
    assert "type" not in peers["spec"] or peers["spec"]["type"] == "ClusterIP"


def test_the_server_knows_its_pod_ip_and_the_peers_name():
    config = with_sd(app(namespace="sd"), autoscaling={"min_replicas": 1, "max_replicas": 4, "prometheus_url": PROM})
    result = run(config)
    variables = env(container(result))
    assert variables["SD_ADVERTISE_ADDRESS"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    peers = result.one("Service", "stable-diffusion-peers")
    assert variables["SD_PEERS"] == f"{peers['metadata']['name']}.{peers['metadata']['namespace']}.svc"
    # The server takes them as they are rendered (the pod IP as the kubelet fills it in).
    _, settings = parse(["serve"], {"SD_ADVERTISE_ADDRESS": "10.244.3.17", "SD_PEERS": variables["SD_PEERS"]})
    assert settings.advertise_address == "10.244.3.17" and settings.peers == "stable-diffusion-peers.sd.svc"
    # The init container downloads; it serves nothing and has no such settings.
    assert not {"SD_ADVERTISE_ADDRESS", "SD_PEERS"} & set(env(container(result, "model-download")))


def test_the_network_policy_admits_the_replicas_themselves_on_the_api_port():
    result = run(app(namespace="sd"))
    policy = result.one("NetworkPolicy", "stable-diffusion")
    pod_labels = deployment(result)["spec"]["template"]["metadata"]["labels"]
    (rule,) = policy["spec"]["ingress"]
    (from_pods,) = [peer for peer in rule["from"] if "podSelector" in peer]
    assert set(from_pods) == {"podSelector"}  # no namespaceSelector: the policy's own namespace only
    assert from_pods["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert rule["ports"] == [{"port": 8000.0, "protocol": "TCP"}]


def test_stablestudio_pods_are_not_admitted_as_peers():
    result = run(app(ingress_http={"host": "sd.example.com"},
                     stablestudio={"enabled": True, "image": {"repository": "ghcr.io/acme/ss", "tag": "1"}}))
    studio_labels = deployment_labels(result, "stablestudio")
    (rule,) = result.one("NetworkPolicy", "stable-diffusion")["spec"]["ingress"]
    for peer in rule["from"]:
        if "podSelector" in peer:
            assert not peer["podSelector"]["matchLabels"].items() <= studio_labels.items()
    studio_policy = result.one("NetworkPolicy", "stable-diffusion-stablestudio")
    assert all("podSelector" not in peer for r in studio_policy["spec"]["ingress"] for peer in r["from"])


def deployment_labels(result, component: str) -> dict:
    (found,) = [d for d in result.find("Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    return found["spec"]["template"]["metadata"]["labels"]
