"""docs/component.md inputs -> objects: the server image (prebuilt or built) and the GPU node pools."""

from __future__ import annotations

import pytest

from . import helpers
from .helpers import PROM, app, container, is_secret, pod_spec, pulumi_warnings, run, unwrap, with_sd

# --- image -------------------------------------------------------------------------------


def test_prebuilt_image_by_tag_is_pulled_always():
    c = container(run(app()))
    assert c["image"] == "ghcr.io/acme/sd:1.0.0" and c["imagePullPolicy"] == "Always"


def test_prebuilt_image_by_digest_with_pull_secret():
    digest = "sha256:" + "b" * 64
    result = run(app(image={"repository": "ghcr.io/acme/sd", "digest": digest, "pull_secret": "regcred"}))
    assert container(result)["image"] == f"ghcr.io/acme/sd@{digest}"
    assert container(result)["imagePullPolicy"] == "IfNotPresent"
    assert pod_spec(result)["imagePullSecrets"] == [{"name": "regcred"}]
    assert result.of_type("docker-build:index:Image") == []


def test_built_image_is_pushed_from_the_repo_root():
    result = run(app(image={"build": {"registry": "ghcr.io/acme", "tag": "v7", "username": "bot",
                                      "password": {"key": "registryToken"}}}),
                 extra_config={"stable-diffusion:registryToken": "ghp_x"},
                 secret_keys=["stable-diffusion:registryToken"])
    (image,) = result.of_type("docker-build:index:Image")
    inputs = image.inputs
    assert inputs["push"] is True
    assert inputs["tags"] == ["ghcr.io/acme/stable-diffusion-inference:v7"]
    assert inputs["dockerfile"]["location"].endswith("inference/Dockerfile")
    assert inputs["dockerfile"]["location"] == inputs["context"]["location"] + "/inference/Dockerfile"
    # The password is a secret (the whole list is marked secret on the wire).
    assert is_secret(inputs["registries"])
    (registry,) = unwrap(inputs["registries"])
    assert registry == {"address": "ghcr.io", "username": "bot", "password": "ghp_x"}
    # Under mocks there is no digest: the Deployment falls back to the tag; with a real
    # build it is the pushed `ref` (repo:tag@sha256:...).
    assert container(result)["image"] == "ghcr.io/acme/stable-diffusion-inference:v7"
    assert container(result)["imagePullPolicy"] == "Always"


def test_built_image_for_a_local_cluster_is_loaded_into_the_local_daemon(monkeypatch):
    seen = pulumi_warnings(monkeypatch)
    result = run(app(image={"build": {"local_cluster": "kind"}}))
    (image,) = result.of_type("docker-build:index:Image")
    assert image.inputs["push"] is False and image.inputs["load"] is True
    assert container(result)["image"] == "stable-diffusion-inference:v1"
    assert container(result)["imagePullPolicy"] == "IfNotPresent"
    # kind keeps its own image store: `pulumi up` says how the image gets there.
    assert any("kind load docker-image stable-diffusion-inference:v1" in w for w in seen), seen


@pytest.mark.parametrize("cluster", ["docker-desktop", "rancher-desktop"])
def test_a_cluster_sharing_the_daemon_needs_no_load_step(monkeypatch, cluster):
    seen = pulumi_warnings(monkeypatch)
    result = run(app(image={"build": {"local_cluster": cluster}}))
    assert container(result)["imagePullPolicy"] == "IfNotPresent"
    assert not any("local_cluster" in w for w in seen), seen


# --- node pools --------------------------------------------------------------------------


def test_existing_nodes_declare_no_pool():
    result = run(app())
    assert result.find("NodePool") == []
    assert result.of_type("gcp:container/nodePool:NodePool") == []


def test_existing_nodes_with_custom_selector():
    result = run(app(node_pool={"mode": "existing", "node_selector": {"pool": "gpu"}}))
    assert pod_spec(result)["nodeSelector"] == {"pool": "gpu"}


def test_karpenter_node_pool():
    result = run(with_sd(app(preset={"name": "gpu-a100-x1"}, node_pool={
        "mode": "karpenter", "node_class": "gpu", "capacity_types": ["spot", "on-demand"]}), replica_count=2))
    pool = result.one("NodePool")
    assert pool["apiVersion"] == "karpenter.sh/v1"
    spec = pool["spec"]
    template = spec["template"]["spec"]
    assert template["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu"}
    requirements = {r["key"]: r for r in template["requirements"]}
    assert requirements["karpenter.k8s.aws/instance-gpu-name"]["values"] == ["a100"]
    assert requirements["karpenter.k8s.aws/instance-gpu-memory"]["operator"] == "Gt"
    assert requirements["karpenter.sh/capacity-type"]["values"] == ["spot", "on-demand"]
    assert template["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
    assert int(spec["limits"]["nvidia.com/gpu"]) >= 3
    assert spec["disruption"]["consolidationPolicy"] == "WhenEmpty"
    assert pod_spec(result)["nodeSelector"]["karpenter.sh/nodepool"] == pool["metadata"]["name"]
    # The pool can grow, so a rollout surges instead of dropping a replica.
    strategy = helpers.deployment(result)["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 1.0, "maxUnavailable": 0.0}


def test_karpenter_cpu_pool_has_no_gpu_taint():
    pool = run(app(preset={"name": "cpu-small"}, node_pool="karpenter")).one("NodePool")
    template = pool["spec"]["template"]["spec"]
    assert "taints" not in template
    assert "cpu" in pool["spec"]["limits"] and "nvidia.com/gpu" not in pool["spec"]["limits"]


def test_gke_node_pool():
    result = run(with_sd(app(preset={"name": "gpu-l4-x1"}, node_pool={
        "mode": "gke", "cluster": "prod", "location": "us-central1", "project": "acme", "spot": True}),
        autoscaling={"max_replicas": 4, "prometheus_url": PROM}))
    (pool,) = result.of_type("gcp:container/nodePool:NodePool")
    inputs = pool.inputs
    assert inputs["cluster"] == "prod" and inputs["location"] == "us-central1" and inputs["project"] == "acme"
    config = inputs["nodeConfig"]
    assert config["machineType"] == "g2-standard-8" and config["spot"] is True
    (accelerator,) = config["guestAccelerators"]
    assert accelerator["type"] == "nvidia-l4" and accelerator["count"] == 1.0
    assert accelerator["gpuDriverInstallationConfig"] == {"gpuDriverVersion": "LATEST"}
    assert inputs["autoscaling"]["maxNodeCount"] == 5.0
    assert pod_spec(result)["nodeSelector"] == {
        "cloud.google.com/gke-nodepool": inputs["name"], "cloud.google.com/gke-accelerator": "nvidia-l4"}


def test_fixed_nodes_roll_without_surge():
    strategy = helpers.deployment(run(app()))["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 0.0, "maxUnavailable": 1.0}
