"""The app inputs: schema v1 as docs/component.md documents it, defaults, and clear errors."""

from __future__ import annotations

import pytest
import yaml

from components import AppConfigError, parse_app_config
from components.config import (
    BuiltImage,
    ConfigSecretRef,
    ExistingNodes,
    GkeNodePool,
    KarpenterNodePool,
    KubernetesSecretRef,
    PrebuiltImage,
    TlsClusterIssuer,
    TlsSecret,
)

from . import helpers

# Every schema v1 path (docs/component.md, "Inputs"), in the shapes the docs give.
SCHEMA_V1 = """
preset:
  name: gpu-a100-x1
ingress_http:
  auth: true
  host: sd.example.com
  class_name: nginx
  tls:
    cluster_issuer: letsencrypt
stable_diffusion:
  replica_count: 2
  autoscaling:
    min_replicas: 0
    max_replicas: 4
    target_queue_depth: 3
    prometheus_url: http://prometheus-server.monitoring.svc:9090
  hugging_face_model:
    model_hf_name: stabilityai/stable-diffusion-xl-base-1.0
    hf_token:
      key: hfToken
    revision: 462165984030d82259a11f4367a4eed129e94a7b
    cache:
      size: 100Gi
      storage_class: efs
      access_mode: ReadWriteMany
node_pool:
  mode: karpenter
  node_class: default
image:
  build:
    registry: ghcr.io/acme
namespace: sd-prod
presets:
  gpu-a100-x2:
    gpu_count: 2
    cpu: "20"
    memory: 180Gi
    gpu_product: NVIDIA-A100-SXM4-80GB
    karpenter_gpu_name: a100
"""


def test_schema_v1_example_loads_with_every_field():
    app = parse_app_config(yaml.safe_load(SCHEMA_V1))
    assert app.preset.name == "gpu-a100-x1"
    assert app.ingress_http.class_name == "nginx"
    assert app.ingress_http.tls == TlsClusterIssuer(cluster_issuer="letsencrypt")
    assert app.stable_diffusion.replica_count == 2
    assert app.stable_diffusion.autoscaling.min_replicas == 0
    assert app.stable_diffusion.autoscaling.target_queue_depth == 3
    model = app.stable_diffusion.hugging_face_model
    assert model.hf_token == ConfigSecretRef(key="hfToken")
    assert model.cache.storage_class == "efs" and model.cache.shared
    assert isinstance(app.node_pool, KarpenterNodePool) and app.node_pool.node_class == "default"
    assert isinstance(app.image, BuiltImage) and app.image.build.registry == "ghcr.io/acme"
    assert app.namespace == "sd-prod"
    assert app.catalogue["gpu-a100-x2"].gpu_count == 2


def test_defaults_match_the_design_table():
    # `image` has no usable default (see test_image_reach.py): a local build is the closest.
    app = parse_app_config({
        "preset": {"name": "cpu-small"},
        "stable_diffusion": {"hugging_face_model": {"model_hf_name": "runwayml/stable-diffusion-v1-5"}},
        "image": {"build": {"local_cluster": "kind"}},
    })
    assert app.ingress_http.auth is True
    assert app.ingress_http.class_name == "traefik"
    assert app.ingress_http.host is None and app.ingress_http.tls is None
    assert app.stable_diffusion.replica_count == 1
    assert app.stable_diffusion.autoscaling is None
    assert app.stable_diffusion.hugging_face_model.hf_token is None
    assert app.stable_diffusion.hugging_face_model.revision is None
    assert app.node_pool == ExistingNodes()
    assert app.image.build.repository == "stable-diffusion-inference" and app.image.build.tag == "v1"
    assert app.image.build.registry is None
    assert app.monitoring.namespace is None and app.monitoring.pod_monitor is False
    assert app.namespace == "stable-diffusion"


@pytest.mark.parametrize("mode, cls", [("existing", ExistingNodes), ("karpenter", KarpenterNodePool)])
def test_node_pool_mode_string_is_shorthand(mode, cls):
    app = parse_app_config(helpers.app(node_pool=mode))
    assert isinstance(app.node_pool, cls)


def test_node_pool_gke_object():
    app = parse_app_config(helpers.app(node_pool={"mode": "gke", "cluster": "c1", "location": "us-central1"}))
    assert isinstance(app.node_pool, GkeNodePool) and app.node_pool.cluster == "c1"


@pytest.mark.parametrize(
    "token, expected",
    [
        ({"key": "hfToken"}, ConfigSecretRef(key="hfToken")),
        ({"secret_name": "hf", "secret_key": "token"}, KubernetesSecretRef(secret_name="hf", secret_key="token")),
        ("hf_abc", "hf_abc"),
    ],
)
def test_hf_token_shapes(token, expected):
    app = parse_app_config(helpers.with_model(helpers.app(), hf_token=token))
    assert app.stable_diffusion.hugging_face_model.hf_token == expected


@pytest.mark.parametrize(
    "tls, expected",
    [({"secret_name": "sd-cert"}, TlsSecret(secret_name="sd-cert")),
     ({"cluster_issuer": "le"}, TlsClusterIssuer(cluster_issuer="le"))],
)
def test_tls_shapes(tls, expected):
    app = parse_app_config(helpers.app(ingress_http={"host": "sd.example.com", "tls": tls}))
    assert app.ingress_http.tls == expected


def test_prebuilt_image_by_digest():
    digest = "sha256:" + "a" * 64
    app = parse_app_config(helpers.app(image={"repository": "ghcr.io/acme/sd", "digest": digest}))
    assert isinstance(app.image, PrebuiltImage) and app.image.reference == f"ghcr.io/acme/sd@{digest}"


def test_all_digit_text_values_set_by_pulumi_config_path_are_taken_as_text():
    # `pulumi config set --path 'app.image.tag' 2` stores the number 2, not the text "2".
    config = helpers.with_model(
        helpers.app(image={"repository": "ghcr.io/acme/sd", "tag": 2}), revision=71153311
    )
    app = parse_app_config(config)
    assert app.image.reference == "ghcr.io/acme/sd:2"
    assert app.stable_diffusion.hugging_face_model.revision == "71153311"


def test_custom_preset_replaces_builtin_of_same_name():
    app = parse_app_config(helpers.app(presets={"gpu-l4-x1": {"gpu_count": 2, "cpu": "14", "memory": "56Gi",
                                                              "gpu_product": "NVIDIA-L4"}}))
    assert app.resolved_preset.gpu_count == 2


# (config, path named in the error, words the message must contain)
INVALID = {
    "unknown preset": (
        helpers.app(preset={"name": "gpu-b200-x1"}),
        "stable-diffusion:app.preset.name", ["unknown preset 'gpu-b200-x1'", "cpu-small", "gpu-h200-x1"],
    ),
    "missing preset": (
        {k: v for k, v in helpers.app().items() if k != "preset"},
        "stable-diffusion:app.preset", ["Field required"],
    ),
    "replica_count 0": (
        helpers.with_sd(helpers.app(), replica_count=0),
        "stable-diffusion:app.stable_diffusion.replica_count", ["greater than or equal to 1"],
    ),
    "malformed repo id": (
        helpers.with_model(helpers.app(), model_hf_name="not a/repo id"),
        "stable-diffusion:app.stable_diffusion.hugging_face_model.model_hf_name",
        ["not a Hugging Face repo id", "owner/name"],
    ),
    "missing model": (
        helpers.app(stable_diffusion={"hugging_face_model": {}}),
        "stable-diffusion:app.stable_diffusion.hugging_face_model.model_hf_name", ["Field required"],
    ),
    "min > max replicas": (
        helpers.with_sd(helpers.app(), autoscaling={"min_replicas": 3, "max_replicas": 2,
                                                    "prometheus_url": "http://prom.monitoring:9090"}),
        "stable-diffusion:app.stable_diffusion.autoscaling", ["min_replicas (3) must be <= max_replicas (2)"],
    ),
    "autoscaling without prometheus": (
        helpers.with_sd(helpers.app(), autoscaling={"max_replicas": 2}),
        "stable-diffusion:app.stable_diffusion.autoscaling.prometheus_url", ["Field required"],
    ),
    "unknown ingress class": (
        helpers.app(ingress_http={"class_name": "haproxy"}),
        "stable-diffusion:app.ingress_http.class_name", ["'traefik' or 'nginx'"],
    ),
    "tls without host": (
        helpers.app(ingress_http={"tls": {"secret_name": "cert"}}),
        "stable-diffusion:app.ingress_http", ["tls needs ingress_http.host"],
    ),
    "tls of unknown shape": (
        helpers.app(ingress_http={"host": "a.example.com", "tls": {"issuer": "x"}}),
        "stable-diffusion:app.ingress_http.tls", ["{secret_name: NAME}", "{cluster_issuer: NAME}"],
    ),
    "unknown node pool mode": (
        helpers.app(node_pool="eks"),
        "stable-diffusion:app.node_pool", ["'existing', 'karpenter', 'gke'"],
    ),
    "gke without cluster": (
        helpers.app(node_pool={"mode": "gke", "location": "us-central1"}),
        "stable-diffusion:app.node_pool.cluster", ["Field required"],
    ),
    "gpu with no gke accelerator": (
        helpers.app(preset={"name": "gpu-a10g-x1"}, node_pool={"mode": "gke", "cluster": "c", "location": "l"}),
        "stable-diffusion:app.preset.name", ["no GKE accelerator", "allowed with gke:", "gpu-l4-x1"],
    ),
    "hf_token of unknown shape": (
        helpers.with_model(helpers.app(), hf_token={"name": "x"}),
        "stable-diffusion:app.stable_diffusion.hugging_face_model.hf_token",
        ["{key: NAME}", "{secret_name, secret_key}"],
    ),
    "image without tag": (
        helpers.app(image={"repository": "ghcr.io/acme/sd"}),
        "stable-diffusion:app.image", ["needs a tag or a digest"],
    ),
    "image latest": (
        helpers.app(image={"repository": "ghcr.io/acme/sd", "tag": "latest"}),
        "stable-diffusion:app.image", ["'latest' is not allowed"],
    ),
    "image both shapes": (
        helpers.app(image={"repository": "ghcr.io/acme/sd", "tag": "1", "build": {}}),
        "stable-diffusion:app.image", ["not both"],
    ),
    "bad namespace": (
        helpers.app(namespace="Stable_Diffusion"),
        "stable-diffusion:app.namespace", ["is not a DNS label"],
    ),
    "bad quantity": (
        helpers.with_model(helpers.app(), cache={"size": "lots"}),
        "stable-diffusion:app.stable_diffusion.hugging_face_model.cache.size", ["Kubernetes quantity"],
    ),
    "unknown cache access mode": (
        helpers.with_model(helpers.app(), cache={"access_mode": "ReadOnlyMany"}),
        "stable-diffusion:app.stable_diffusion.hugging_face_model.cache.access_mode",
        ["'ReadWriteMany', 'ReadWriteOnce' or 'ReadWriteOncePod'"],
    ),
    "unknown compile mode": (
        helpers.with_sd(helpers.app(), compile="fast"),
        "stable-diffusion:app.stable_diffusion.compile", ["'auto', 'off' or 'max'"],
    ),
    "warm-up size not a multiple of 8": (
        helpers.with_sd(helpers.app(), warmup_sizes=["native", "500x512"]),
        "stable-diffusion:app.stable_diffusion.warmup_sizes[1]", ["multiples of 8"],
    ),
    "warm-up size not WIDTHxHEIGHT": (
        helpers.with_sd(helpers.app(), warmup_sizes=["512"]),
        "stable-diffusion:app.stable_diffusion.warmup_sizes[0]", ["WIDTHxHEIGHT"],
    ),
    "warm-up none with sizes": (
        helpers.with_sd(helpers.app(), warmup_sizes=["none", "512x512"]),
        "stable-diffusion:app.stable_diffusion.warmup_sizes", ["'none' stands alone"],
    ),
    "typo in a key": (
        helpers.app(ingress_http={"clas_name": "nginx"}),
        "stable-diffusion:app.ingress_http.clas_name", ["unknown key"],
    ),
    # The path comes from pydantic's structured loc: a map key is part of it whatever its
    # spelling (the old string guesswork dropped any item that began with a capital).
    "bad preset name": (
        helpers.app(presets={"Big_GPU": {"cpu": "4", "memory": "8Gi"}}),
        "stable-diffusion:app.presets.Big_GPU", ["is not a DNS label"],
    ),
    "custom preset without gpu labels": (
        helpers.app(preset={"name": "mine"}, presets={"mine": {"gpu_count": 1, "cpu": "4", "memory": "8Gi"}}),
        "stable-diffusion:app.presets.mine", ["needs at least one of gpu_product"],
    ),
}


@pytest.mark.parametrize("case", list(INVALID), ids=list(INVALID))
def test_invalid_input_names_path_and_allowed_values(case):
    config, path, words = INVALID[case]
    with pytest.raises(AppConfigError) as raised:
        parse_app_config(config)
    lines = [line.strip() for line in str(raised.value).splitlines()[1:]]
    matching = [line for line in lines if line.startswith(path + ":")]
    assert matching, f"no error at {path} in:\n{raised.value}"
    for word in words:
        assert any(word in line for line in matching), f"{word!r} not in {matching}"


def test_invalid_config_declares_no_resource():
    with pytest.raises(Exception) as raised:
        helpers.run(helpers.app(preset={"name": "nope"}))
    assert "unknown preset 'nope'" in str(raised.value)


def _declared(config: dict) -> tuple[list, list]:
    """Resources the program declared (after all RPCs), and the errors it raised."""
    import pulumi

    from infra.program import main

    errors: list[Exception] = []

    def program():
        try:
            main()
        except pulumi.RunError as error:
            errors.append(error)

    return helpers.run(config, program=program).resources, errors


def test_invalid_config_declares_nothing_before_failing():
    resources, errors = _declared(helpers.with_sd(helpers.app(), replica_count=0))
    assert len(errors) == 1 and "replica_count" in str(errors[0])
    assert resources == []
    # The same program with a valid config does declare resources.
    resources, errors = _declared(helpers.app())
    assert errors == [] and len(resources) > 5
