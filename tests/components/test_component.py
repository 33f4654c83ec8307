"""Each input shape of docs/component.md ("Inputs") -> the objects and fields it must produce: the
component, its namespace and pod, presets, replicas and the model cache. Secrets, networking,
autoscaling, images and node pools are in the test_component_*.py files beside this one."""

from __future__ import annotations

import pytest

from components import TYPE_TOKEN

from . import helpers
from .helpers import app, container, env, pod_spec, run, volumes, with_model, with_sd


def test_component_type_token_and_children_parented():
    result = run(app())
    components = result.of_type(TYPE_TOKEN)
    assert TYPE_TOKEN == "stable-diffusion:index:StableDiffusion"
    assert [c.name for c in components] == ["stable-diffusion"]
    # Every other resource is the component's child: its URN type chain starts there.
    children = [u for u in result.urns if not u.endswith("::stable-diffusion")]
    assert len(children) == len(result.resources) - 1
    assert all(f"::{TYPE_TOKEN}$" in urn for urn in children), children
    kinds = sorted(o["kind"] for o in result.kubernetes_objects())
    assert kinds == sorted([
        "Namespace", "ServiceAccount", "Secret", "Deployment", "PodDisruptionBudget",
        "Service", "Service", "Ingress", "NetworkPolicy",
    ])


def test_namespace_is_pod_security_restricted():
    ns = run(app(namespace="sd-test")).one("Namespace")
    assert ns["metadata"]["name"] == "sd-test"
    labels = ns["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_every_namespaced_object_is_in_the_app_namespace():
    result = run(app(namespace="sd-test"))
    for obj in result.kubernetes_objects():
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "sd-test", obj["kind"]


def test_service_account_does_not_automount_a_token():
    result = run(app())
    assert result.one("ServiceAccount")["automountServiceAccountToken"] is False
    spec = pod_spec(result)
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == result.one("ServiceAccount")["metadata"]["name"]


def test_deployment_container_contract():
    result = run(with_sd(with_model(app(), revision="abc123"), max_batch_size=6, queue_size=50,
                         cors_origins=["https://a.example", "https://b.example"]))
    c = container(result)
    assert c["args"] == ["serve"]
    assert c["ports"] == [{"name": "http", "containerPort": 8000.0, "protocol": "TCP"}]
    e = env(c)
    assert e["SD_MODEL"] == "stabilityai/sd-turbo"
    assert e["SD_REVISION"] == "abc123"
    assert e["SD_CACHE_DIR"] == "/models"
    assert e["SD_HOST"] == "0.0.0.0" and e["SD_PORT"] == "8000"
    assert e["SD_MAX_BATCH_SIZE"] == "6" and e["SD_QUEUE_SIZE"] == "50"
    assert e["SD_COMPILE"] == "auto"  # the fast path by default
    assert e["SD_CORS_ORIGINS"] == "https://a.example,https://b.example"
    assert e["HOME"] == "/tmp"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/models"] == "model-cache" and mounts["/tmp"] == "tmp"
    assert volumes(result)["tmp"]["emptyDir"]


def test_server_links_point_at_the_ingress_host():
    # Issue 14: OpenAI url links come from the configured public URL, not the Host header.
    assert "SD_PUBLIC_URL" not in env(container(run(app())))
    plain = env(container(run(app(ingress_http={"host": "sd.example.com"}))))
    assert plain["SD_PUBLIC_URL"] == "http://sd.example.com"
    tls = env(container(run(app(ingress_http={"host": "sd.example.com", "tls": {"secret_name": "sd-cert"}}))))
    assert tls["SD_PUBLIC_URL"] == "https://sd.example.com"


def test_compile_mode_reaches_the_server_only():
    result = run(with_sd(app(), compile="off"))
    assert env(container(result))["SD_COMPILE"] == "off"
    assert "SD_COMPILE" not in env(container(result, "model-download"))  # download compiles nothing


def test_precompile_reaches_the_server_only_and_is_checked():
    assert env(container(run(app())))["SD_PRECOMPILE"] == "auto"
    result = run(with_sd(app(), precompile="off"))
    assert env(container(result))["SD_PRECOMPILE"] == "off"
    assert "SD_PRECOMPILE" not in env(container(result, "model-download"))
    from components import AppConfigError, parse_app_config

    with pytest.raises(AppConfigError) as error:
        parse_app_config(with_sd(app(), precompile="sometimes"))
    assert "stable-diffusion:app.stable_diffusion.precompile" in str(error.value)


def test_warmup_sizes_reach_the_server_only():
    assert env(container(run(app())))["SD_WARMUP_SIZES"] == "auto"
    result = run(with_sd(app(), warmup_sizes=["native", "768X512", " 512x768"]))
    assert env(container(result))["SD_WARMUP_SIZES"] == "native,768x512,512x768"
    assert "SD_WARMUP_SIZES" not in env(container(result, "model-download"))


def test_init_container_prefetches_the_model():
    result = run(with_model(app(), revision="v2"))
    init = container(result, "model-download")
    # `download` reads the same SD_* model variables as `serve`.
    assert init["args"] == ["download"]
    e = env(init)
    assert (e["SD_MODEL"], e["SD_REVISION"], e["SD_CACHE_DIR"]) == ("stabilityai/sd-turbo", "v2", "/models")
    assert init["image"] == container(result)["image"] == "ghcr.io/acme/sd:1.0.0"
    assert {m["mountPath"] for m in init["volumeMounts"]} >= {"/models", "/tmp"}


def test_probes_and_graceful_shutdown():
    result = run(app())
    c = container(result)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # big models load slowly
    assert c["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert pod_spec(result)["terminationGracePeriodSeconds"] >= 300


@pytest.mark.parametrize("name", ["inference", "model-download"])
def test_restricted_security_context(name):
    result = run(app())
    sc = container(result, name)["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001.0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    pod = pod_spec(result)["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["seccompProfile"]["type"] == "RuntimeDefault"


def test_requests_equal_limits_from_the_preset():
    resources = container(run(app(preset={"name": "gpu-l40s-x1"})))["resources"]
    assert resources["requests"] == resources["limits"]
    assert resources["limits"]["nvidia.com/gpu"] == "1"
    assert resources["limits"]["cpu"] == "6" and resources["limits"]["memory"] == "48Gi"


def test_cpu_preset_requests_no_gpu_and_tolerates_no_taint():
    result = run(app(preset={"name": "cpu-small"}))
    assert "nvidia.com/gpu" not in container(result)["resources"]["limits"]
    assert "tolerations" not in pod_spec(result)
    assert "nodeSelector" not in pod_spec(result)


def test_custom_preset_shapes_the_pod():
    config = app(preset={"name": "gpu-l4-x2"}, presets={"gpu-l4-x2": {
        "gpu_count": 2, "cpu": "14", "memory": "56Gi", "gpu_product": "NVIDIA-L4"}})
    result = run(config)
    assert container(result)["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod_spec(result)["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}


def test_topology_spread_over_nodes_and_zones():
    constraints = pod_spec(run(app()))["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in constraints} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert all(c["labelSelector"]["matchLabels"]["app.kubernetes.io/name"] == "stable-diffusion" for c in constraints)


def test_fixed_replicas():
    deployment = helpers.deployment(run(with_sd(app(), replica_count=3)))
    assert deployment["spec"]["replicas"] == 3.0


# --- model cache -------------------------------------------------------------------------


def test_cache_without_storage_class_is_an_ephemeral_volume_per_pod():
    result = run(with_sd(with_model(app(), cache={"size": "80Gi"}), replica_count=3))
    assert result.find("PersistentVolumeClaim") == []
    claim = volumes(result)["model-cache"]["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"]
    assert claim["resources"]["requests"]["storage"] == "80Gi"


def test_cache_with_rwx_storage_class_is_one_shared_claim():
    result = run(with_sd(with_model(app(), cache={"storage_class": "efs-sc", "size": "200Gi"}), replica_count=3))
    pvc = result.one("PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == "efs-sc"
    assert volumes(result)["model-cache"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_rwo_storage_class_is_never_shared_between_replicas():
    result = run(with_sd(with_model(app(), cache={"storage_class": "gp3", "access_mode": "ReadWriteOnce"}),
                         replica_count=4))
    assert result.find("PersistentVolumeClaim") == []
    claim = volumes(result)["model-cache"]["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"] and claim["storageClassName"] == "gp3"


@pytest.mark.parametrize("name", ["Stable_Diffusion", "x" * 31, "-sd"])
def test_component_name_must_be_a_short_dns_label(name):
    from components import StableDiffusion

    def program():
        StableDiffusion(name, {"app": app()})

    with pytest.raises(ValueError) as raised:
        run(app(), program=program)
    assert "DNS label" in str(raised.value)


def test_drain_ends_before_the_grace_period_does():
    # Issue 14: SIGTERM ends the server even with a stuck call, by its drain timeout; that
    # must come before the kubelet's SIGKILL, whatever grace period the stack sets.
    for grace, drain in ((300, "280"), (60, "40")):
        result = run(with_sd(app(), termination_grace_period_seconds=grace))
        assert pod_spec(result)["terminationGracePeriodSeconds"] == grace
        assert env(container(result))["SD_DRAIN_TIMEOUT_SECONDS"] == drain
        assert "SD_DRAIN_TIMEOUT_SECONDS" not in env(container(result, "model-download"))


def test_trusted_proxies_reach_the_server():
    # Issue 14: X-Forwarded-For is believed only from the proxies the stack names.
    assert "SD_TRUSTED_PROXIES" not in env(container(run(app())))
    result = run(app(ingress_http={"trusted_proxies": ["10.42.0.0/16", "192.168.1.7"]}))
    assert env(container(result))["SD_TRUSTED_PROXIES"] == "10.42.0.0/16,192.168.1.7"
    with pytest.raises(Exception, match=r"ingress_http\.trusted_proxies\[0\]: 'the-controller' is not an IP"):
        run(app(ingress_http={"trusted_proxies": ["the-controller"]}))
