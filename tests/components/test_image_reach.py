"""Every config gives the cluster's nodes an image they can pull, or is refused before `pulumi up`.

A remote cluster's nodes (EKS, GKE, AKS; every Karpenter or GKE pool) pull from a registry;
an image that exists only in this machine's Docker daemon, or a repository that silently
means Docker Hub, ends in ErrImagePull after a long wait. Local clusters (kind, k3d,
minikube, Docker Desktop, Rancher Desktop) say so with `image.build.local_cluster`.
"""

from __future__ import annotations

import pulumi
import pytest

from components.config import LOCAL_CLUSTERS, AppConfigError, parse_app_config, registry_host

from .helpers import app, run

# The example config the project started from: preset, auth, replica_count, model,
# hf_token, nothing else.
SEED_EXAMPLE = {
    "preset": {"name": "gpu-l4-x1"},
    "ingress_http": {"auth": True},
    "stable_diffusion": {
        "replica_count": 1,
        "hugging_face_model": {"model_hf_name": "stabilityai/sd-turbo", "hf_token": {"key": "hfToken"}},
    },
}
KARPENTER = {"mode": "karpenter"}
GKE = {"mode": "gke", "cluster": "prod", "location": "us-central1"}
STUDIO = {"ingress_http": {"host": "sd.example.com"}}


def _error(config: dict) -> str:
    with pytest.raises(AppConfigError) as caught:
        parse_app_config(config)
    return str(caught.value)


def test_the_seed_example_is_refused_naming_registry_and_repository():
    message = _error(SEED_EXAMPLE)
    assert "stable-diffusion:app.image: no image the cluster can pull" in message
    assert "image.build.registry" in message and "image.repository" in message
    assert "image.build.local_cluster" in message and "kind" in message


def test_the_seed_example_fails_the_program_before_anything_is_declared():
    # infra/program.py turns the validation error into a RunError (no traceback).
    with pytest.raises(pulumi.RunError, match=r"app\.image: no image the cluster can pull"):
        run(SEED_EXAMPLE)


def test_an_empty_build_is_refused_like_no_image():
    assert "stable-diffusion:app.image: no image the cluster can pull" in _error(app(image={"build": {}}))


@pytest.mark.parametrize("cluster", LOCAL_CLUSTERS)
def test_a_local_cluster_build_is_accepted_on_existing_nodes(cluster):
    config = parse_app_config(app(image={"build": {"local_cluster": cluster}}))
    assert config.image.build.local_cluster == cluster


@pytest.mark.parametrize("pool", [KARPENTER, GKE], ids=["karpenter", "gke"])
def test_cloud_pools_refuse_a_local_only_image(pool):
    preset = {"name": "gpu-a100-x1"} if pool is GKE else {"name": "gpu-l4-x1"}
    message = _error(app(preset=preset, node_pool=pool, image={"build": {"local_cluster": "kind"}}))
    assert "stable-diffusion:app.image.build.local_cluster:" in message
    assert "image.build.registry" in message and "image.repository" in message


@pytest.mark.parametrize("pool", [KARPENTER, GKE], ids=["karpenter", "gke"])
def test_cloud_pools_refuse_a_repository_without_registry_host(pool):
    preset = {"name": "gpu-a100-x1"} if pool is GKE else {"name": "gpu-l4-x1"}
    message = _error(app(preset=preset, node_pool=pool, image={"repository": "acme/sd", "tag": "1.0.0"}))
    assert "stable-diffusion:app.image.repository: 'acme/sd' names no registry host" in message
    assert "docker.io/acme/sd" in message
    # Docker Hub said explicitly is fine.
    parsed = parse_app_config(app(preset=preset, node_pool=pool,
                                  image={"repository": "docker.io/acme/sd", "tag": "1.0.0"}))
    assert parsed.image.reference == "docker.io/acme/sd:1.0.0"


def test_cloud_pools_refuse_a_build_registry_without_host():
    message = _error(app(node_pool=KARPENTER, image={"build": {"registry": "acme"}}))
    assert "stable-diffusion:app.image.build.registry: 'acme' names no registry host" in message
    assert parse_app_config(app(node_pool=KARPENTER, image={"build": {"registry": "docker.io/acme"}}))


def test_a_bare_name_is_refused_everywhere():
    # `stable-diffusion` alone is docker.io/library/stable-diffusion, never this image;
    # and a tag is pulled Always, so a locally loaded image of that name never runs.
    message = _error(app(image={"repository": "stable-diffusion", "tag": "1"}))
    assert "stable-diffusion:app.image.repository: 'stable-diffusion' alone means docker.io/library/" in message
    assert "image.build.local_cluster" in message
    assert parse_app_config(app(image={"repository": "docker.io/library/stable-diffusion", "tag": "1"}))


def test_stablestudio_image_follows_the_same_rule():
    studio = {"enabled": True, "image": {"repository": "acme/stablestudio", "tag": "1"}}
    message = _error(app(node_pool=KARPENTER, stablestudio=studio, **STUDIO))
    assert "stable-diffusion:app.stablestudio.image.repository: 'acme/stablestudio' names no registry host" in message
    bare = {"enabled": True, "image": {"repository": "stablestudio", "tag": "1"}}
    assert "stable-diffusion:app.stablestudio.image.repository:" in _error(app(stablestudio=bare, **STUDIO))


def test_registry_and_local_cluster_exclude_each_other():
    message = _error(app(image={"build": {"registry": "ghcr.io/acme", "local_cluster": "kind"}}))
    assert "stable-diffusion:app.image.build: image.build.registry and image.build.local_cluster exclude" in message


def test_unknown_local_cluster_is_refused_with_the_choices():
    message = _error(app(image={"build": {"local_cluster": "microk8s"}}))
    assert "stable-diffusion:app.image.build.local_cluster" in message and "'kind'" in message


@pytest.mark.parametrize("repository, host", [
    ("ghcr.io/acme/sd", "ghcr.io"),
    ("localhost:5000/sd", "localhost:5000"),
    ("localhost/sd", "localhost"),
    ("123.dkr.ecr.eu-west-1.amazonaws.com/sd", "123.dkr.ecr.eu-west-1.amazonaws.com"),
    ("acme/sd", None),
    ("sd", None),
])
def test_registry_host_follows_dockers_rule(repository, host):
    assert registry_host(repository) == host


@pytest.mark.parametrize("config", [
    app(node_pool=KARPENTER, image={"build": {"registry": "ghcr.io/acme"}}),
    app(node_pool=KARPENTER, stablestudio={"enabled": True, "image": {"repository": "ghcr.io/acme/ss", "tag": "1"}},
        **STUDIO),
    app(preset={"name": "gpu-a100-x1"}, node_pool=GKE,
        image={"repository": "us-docker.pkg.dev/acme/sd/api", "digest": "sha256:" + "a" * 64}),
], ids=["karpenter-build", "karpenter-stablestudio", "gke-digest"])
def test_every_container_on_a_cloud_pool_names_a_registry_host(config):
    result = run(config)
    images = [c["image"] for d in result.find("Deployment")
              for c in d["spec"]["template"]["spec"].get("initContainers", []) + d["spec"]["template"]["spec"]["containers"]]
    assert images and all(registry_host(image) for image in images), images
