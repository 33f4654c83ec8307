"""Each input shape of docs/component.md ("Inputs") -> the objects and fields it must produce."""

from __future__ import annotations

import pytest

from components import TYPE_TOKEN

from . import helpers
from .helpers import app, container, env, pod_spec, run, volumes, with_model, with_sd

PROM = "http://prometheus-server.monitoring.svc:9090"


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


# --- HF token ----------------------------------------------------------------------------


def _token_wiring(result) -> tuple[dict, dict]:
    c = container(result)
    return env(c), volumes(result).get("hf-token")


def test_no_hf_token_no_secret():
    result = run(app())
    assert [s["metadata"]["name"] for s in result.find("Secret")] == ["stable-diffusion-htpasswd"]
    e, volume = _token_wiring(result)
    assert "HF_TOKEN_PATH" not in e and volume is None


def test_hf_token_from_pulumi_secret_config():
    result = run(with_model(app(), hf_token={"key": "hfToken"}),
                 extra_config={"stable-diffusion:hfToken": "hf_from_config"},
                 secret_keys=["stable-diffusion:hfToken"])
    secret = result.one("Secret", "stable-diffusion-hf-token")
    assert helpers_is_secret(secret["stringData"])
    assert unwrap(secret["stringData"]) == {"token": "hf_from_config"}
    e, volume = _token_wiring(result)
    assert volume["secret"]["secretName"] == "stable-diffusion-hf-token"
    assert e["HF_TOKEN_PATH"] == "/etc/stable-diffusion/hf/token"
    assert env(container(result, "model-download"))["HF_TOKEN_PATH"] == "/etc/stable-diffusion/hf/token"


def test_hf_token_config_key_must_exist():
    with pytest.raises(Exception) as raised:
        run(with_model(app(), hf_token={"key": "hfToken"}))
    assert "hfToken" in str(raised.value)


def test_hf_token_from_existing_kubernetes_secret_creates_nothing():
    result = run(with_model(app(), hf_token={"secret_name": "team-hf", "secret_key": "hf"}))
    assert result.find("Secret", "stable-diffusion-hf-token") == []
    e, volume = _token_wiring(result)
    assert volume["secret"]["secretName"] == "team-hf"
    assert volume["secret"]["items"] == [{"key": "hf", "path": "hf"}]
    assert e["HF_TOKEN_PATH"] == "/etc/stable-diffusion/hf/hf"


def test_hf_token_plain_string_is_stored_as_a_secret():
    result = run(with_model(app(), hf_token="hf_plain"))
    secret = result.one("Secret", "stable-diffusion-hf-token")
    assert helpers_is_secret(secret["stringData"])
    assert unwrap(secret["stringData"]) == {"token": "hf_plain"}


def test_hf_token_never_in_an_environment_variable():
    result = run(with_model(app(), hf_token="hf_plain"))
    for name in ("inference", "model-download"):
        for item in container(result, name)["env"]:
            assert "hf_plain" not in str(item)
            assert "secretKeyRef" not in str(item)


# --- auth --------------------------------------------------------------------------------


def test_auth_on_mounts_htpasswd_from_random_password():
    result = run(app())
    passwords = result.of_type("random:index/randomPassword:RandomPassword")
    assert len(passwords) == 1 and passwords[0].inputs["length"] == 32.0
    secret = result.one("Secret", "stable-diffusion-htpasswd")
    assert list(unwrap(secret["stringData"])) == ["htpasswd"]
    assert unwrap(secret["stringData"])["htpasswd"].startswith("admin:")
    assert env(container(result))["SD_AUTH_FILE"] == "/etc/stable-diffusion/auth/htpasswd"
    assert volumes(result)["htpasswd"]["secret"]["secretName"] == "stable-diffusion-htpasswd"
    assert result.outputs["api_credentials"]["username"] == "admin"


def test_auth_off_has_no_password_secret_or_output():
    result = run(app(ingress_http={"auth": False}))
    assert result.of_type("random:index/randomPassword:RandomPassword") == []
    assert result.find("Secret") == []
    assert "SD_AUTH_FILE" not in env(container(result))
    assert "api_credentials" not in result.outputs


# --- networking --------------------------------------------------------------------------


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


# --- autoscaling -------------------------------------------------------------------------


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


def _warnings(monkeypatch) -> list[str]:
    import pulumi

    seen: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: seen.append(message))
    return seen


def test_scale_to_zero_on_traefik_warns_about_allow_empty_services(monkeypatch):
    # Traefik drops the route of a Service without endpoints unless allowEmptyServices is
    # on: at zero replicas no request is counted for the service and nothing wakes it.
    seen = _warnings(monkeypatch)
    run(with_sd(app(), autoscaling={"min_replicas": 0, "max_replicas": 3, "prometheus_url": PROM}))
    assert any("allowEmptyServices" in w for w in seen), seen


@pytest.mark.parametrize("ingress_http, autoscaling", [
    ({"class_name": "nginx"}, {"min_replicas": 0}),
    ({"class_name": "traefik"}, {"min_replicas": 0, "activation_query": "sum(up)"}),
    ({"class_name": "traefik"}, {"min_replicas": 1}),
])
def test_no_wake_up_warning_when_it_does_not_depend_on_traefik(monkeypatch, ingress_http, autoscaling):
    seen = _warnings(monkeypatch)
    run(with_sd(app(ingress_http=ingress_http),
                autoscaling={"max_replicas": 3, "prometheus_url": PROM, **autoscaling}))
    assert not any("allowEmptyServices" in w for w in seen), seen


def test_scale_to_zero_with_custom_activation_query():
    result = run(with_sd(app(), autoscaling={"min_replicas": 0, "max_replicas": 3, "prometheus_url": PROM,
                                            "activation_query": "sum(up)"}))
    assert result.one("ScaledObject")["spec"]["triggers"][1]["metadata"]["query"] == "sum(up)"


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
    assert helpers_is_secret(inputs["registries"])
    (registry,) = unwrap(inputs["registries"])
    assert registry == {"address": "ghcr.io", "username": "bot", "password": "ghp_x"}
    # Under mocks there is no digest: the Deployment falls back to the tag; with a real
    # build it is the pushed `ref` (repo:tag@sha256:...).
    assert container(result)["image"] == "ghcr.io/acme/stable-diffusion-inference:v7"
    assert container(result)["imagePullPolicy"] == "Always"


def test_built_image_for_a_local_cluster_is_loaded_into_the_local_daemon(monkeypatch):
    seen = _warnings(monkeypatch)
    result = run(app(image={"build": {"local_cluster": "kind"}}))
    (image,) = result.of_type("docker-build:index:Image")
    assert image.inputs["push"] is False and image.inputs["load"] is True
    assert container(result)["image"] == "stable-diffusion-inference:v1"
    assert container(result)["imagePullPolicy"] == "IfNotPresent"
    # kind keeps its own image store: `pulumi up` says how the image gets there.
    assert any("kind load docker-image stable-diffusion-inference:v1" in w for w in seen), seen


@pytest.mark.parametrize("cluster", ["docker-desktop", "rancher-desktop"])
def test_a_cluster_sharing_the_daemon_needs_no_load_step(monkeypatch, cluster):
    seen = _warnings(monkeypatch)
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


def helpers_is_secret(value) -> bool:
    from pulumi.runtime import rpc

    return rpc.is_rpc_secret(value)


def unwrap(value):
    from pulumi.runtime import rpc

    return rpc.unwrap_rpc_secret(value) if rpc.is_rpc_secret(value) else value


def test_hf_token_config_key_in_another_namespace():
    result = run(with_model(app(), hf_token={"key": "shared:hfToken"}),
                 extra_config={"shared:hfToken": "hf_shared"}, secret_keys=["shared:hfToken"])
    assert unwrap(result.one("Secret", "stable-diffusion-hf-token")["stringData"]) == {"token": "hf_shared"}


def test_component_used_directly_with_a_raw_mapping_and_token_override():
    import pulumi

    from components import StableDiffusion

    def program():
        sd = StableDiffusion("imagegen", {"app": with_model(app(namespace="team-a"), hf_token="ignored"),
                                          "hf_token": pulumi.Output.from_input("hf_override")})
        pulumi.export("internal", sd.internal_api)

    result = run(app(), program=program)
    secret = result.one("Secret", "imagegen-hf-token")
    assert helpers_is_secret(secret["stringData"])
    assert unwrap(secret["stringData"]) == {"token": "hf_override"}
    assert result.outputs["internal"]["host"] == "imagegen.team-a.svc.cluster.local"
    assert result.one("Deployment")["metadata"]["name"] == "imagegen"


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
