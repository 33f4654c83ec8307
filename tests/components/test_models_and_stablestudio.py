"""Issue 6 inputs: LoRA adapters, extra checkpoints, and StableStudio beside the API."""

from __future__ import annotations

import pytest

from components import AppConfigError, parse_app_config

from .helpers import app, container, env, pod_spec, run, with_model, with_sd

MODEL_VARS = ("SD_MODEL", "SD_REVISION", "SD_LORA", "SD_DEVICE", "SD_CACHE_DIR", "HF_HOME")
STUDIO_IMAGE = {"repository": "ghcr.io/acme/stablestudio", "tag": "2024.1"}
HOST = "sd.example.com"


def studio_app(**ingress) -> dict:
    return app(ingress_http={"host": HOST, **ingress}, stablestudio={"enabled": True, "image": STUDIO_IMAGE})


def models_app() -> dict:
    config = with_model(app(), revision="main", loras=[
        {"repo": "latent-consistency/lcm-lora-sdv1-5", "name": "lcm", "weight": 0.8},
        {"repo": "/models/loras/pixel-art"},
    ])
    return with_sd(config, max_loaded_models=2, extra_models=[
        {"model_hf_name": "stabilityai/sdxl-turbo", "revision": "71153311"},
        {"model_hf_name": "runwayml/stable-diffusion-v1-5"},
    ])


# --- LoRA adapters and extra checkpoints -------------------------------------------------


def test_models_and_loras_reach_the_server_env():
    e = env(container(run(models_app())))
    assert e["SD_MODEL"] == "stabilityai/sd-turbo,stabilityai/sdxl-turbo@71153311,runwayml/stable-diffusion-v1-5"
    assert e["SD_REVISION"] == "main"  # the default (first) model's revision
    # Name and weight always explicit; a missing name is the repo's last part, weight 1.
    assert e["SD_LORA"] == "latent-consistency/lcm-lora-sdv1-5:lcm:0.8,/models/loras/pixel-art:pixel-art:1"
    assert e["SD_MAX_LOADED_MODELS"] == "2"


def test_init_container_gets_the_same_model_variables_as_the_server():
    result = run(models_app())
    server, init = env(container(result)), env(container(result, "model-download"))
    assert container(result, "model-download")["args"] == ["download"]
    for name in MODEL_VARS:
        assert init[name] == server[name], name
    # How many checkpoints stay in memory is the server's concern; `download` has no such flag.
    assert server["SD_MAX_LOADED_MODELS"] == "2" and "SD_MAX_LOADED_MODELS" not in init


@pytest.mark.parametrize("preset,device", [("gpu-l4-x1", "cuda"), ("cpu-small", "cpu")])
def test_init_container_fetches_for_the_servers_device(preset, device):
    # The init container has no GPU: without SD_DEVICE it would fetch full-precision
    # weights while the GPU server loads the fp16 variant.
    result = run(app(preset={"name": preset}))
    assert env(container(result, "model-download"))["SD_DEVICE"] == env(container(result))["SD_DEVICE"] == device


def test_no_loras_or_extra_models_no_variables():
    e = env(container(run(app())))
    assert e["SD_MODEL"] == "stabilityai/sd-turbo"
    assert "SD_LORA" not in e and "SD_MAX_LOADED_MODELS" not in e and "SD_REVISION" not in e


def test_lora_weight_given_as_a_string_is_a_number():
    # `pulumi config set --path ...weight 0.5` stores a string.
    config = parse_app_config(with_model(app(), loras=[{"repo": "a/b", "weight": "0.5"}]))
    assert config.stable_diffusion.hugging_face_model.loras[0].weight == 0.5


LORA = "stable-diffusion:app.stable_diffusion.hugging_face_model.loras"
INVALID = {
    "lora weight not a number": (
        with_model(app(), loras=[{"repo": "a/b", "weight": "strong"}]), f"{LORA}[0].weight", "must be a number"),
    "lora weight a boolean": (
        with_model(app(), loras=[{"repo": "a/b", "weight": True}]), f"{LORA}[0].weight", "must be a number"),
    "lora weight infinite": (
        with_model(app(), loras=[{"repo": "a/b", "weight": "inf"}]), f"{LORA}[0].weight", "finite"),
    "lora name charset": (
        with_model(app(), loras=[{"repo": "a/b", "name": "my lora:1"}]), f"{LORA}[0].name", "adapter name"),
    "lora repo malformed": (
        with_model(app(), loras=[{"repo": "a/b/c"}]), f"{LORA}[0].repo", "not a Hugging Face repo id"),
    "lora dir escapes": (
        with_model(app(), loras=[{"repo": "/models/../etc"}]), f"{LORA}[0].repo", "clean absolute directory"),
    "lora names collide": (
        with_model(app(), loras=[{"repo": "a/style"}, {"repo": "b/style"}]), f"{LORA}[1].name", "used twice"),
    "lora unknown key": (
        with_model(app(), loras=[{"repo": "a/b", "scale": 1}]), f"{LORA}[0].scale", "unknown key"),
    "extra model malformed": (
        with_sd(app(), extra_models=[{"model_hf_name": "not a repo"}]),
        "stable-diffusion:app.stable_diffusion.extra_models[0].model_hf_name", "not a Hugging Face repo id"),
    "extra model repeats the default": (
        with_sd(app(), extra_models=[{"model_hf_name": "stabilityai/sd-turbo"}]),
        "stable-diffusion:app.stable_diffusion.extra_models[0].model_hf_name", "already listed"),
    "extra model bad revision": (
        with_sd(app(), extra_models=[{"model_hf_name": "a/b", "revision": "v1 beta"}]),
        "stable-diffusion:app.stable_diffusion.extra_models[0].revision", "of the form"),
    "max_loaded_models 0": (
        with_sd(app(), max_loaded_models=0),
        "stable-diffusion:app.stable_diffusion.max_loaded_models", "greater than or equal to 1"),
    "stablestudio without image": (
        app(ingress_http={"host": HOST}, stablestudio={"enabled": True}),
        "stable-diffusion:app.stablestudio.image", "required when stablestudio.enabled"),
    "stablestudio without host": (
        app(stablestudio={"enabled": True, "image": STUDIO_IMAGE}),
        "stable-diffusion:app.ingress_http.host", "required when stablestudio.enabled"),
    "stablestudio image latest": (
        app(ingress_http={"host": HOST}, stablestudio={"enabled": True, "image": {**STUDIO_IMAGE, "tag": "latest"}}),
        "stable-diffusion:app.stablestudio.image", "'latest' is not allowed"),
    "stablestudio privileged port": (
        app(ingress_http={"host": HOST}, stablestudio={"enabled": True, "image": STUDIO_IMAGE, "port": 80}),
        "stable-diffusion:app.stablestudio.port", "greater than or equal to 1024"),
}


@pytest.mark.parametrize("case", list(INVALID), ids=list(INVALID))
def test_invalid_new_inputs_name_their_path(case):
    config, path, words = INVALID[case]
    with pytest.raises(AppConfigError) as raised:
        parse_app_config(config)
    lines = [line.strip() for line in str(raised.value).splitlines()[1:]]
    matching = [line for line in lines if line.startswith(path + ":")]
    assert matching, f"no error at {path} in:\n{raised.value}"
    assert any(words in line for line in matching), matching


# --- StableStudio ------------------------------------------------------------------------


def test_stablestudio_off_by_default_declares_nothing():
    result = run(app(ingress_http={"host": HOST}))
    assert [d["metadata"]["name"] for d in result.find("Deployment")] == ["stable-diffusion"]
    assert len(result.one("Ingress")["spec"]["rules"][0]["http"]["paths"]) == 1


def test_stablestudio_deployment_is_restricted_with_probes_and_resources():
    result = run(studio_app())
    deployment = result.one("Deployment", "stable-diffusion-stablestudio")
    spec = deployment["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["image"] == "ghcr.io/acme/stablestudio:2024.1" and c["imagePullPolicy"] == "Always"
    assert c["ports"] == [{"name": "http", "containerPort": 8080.0, "protocol": "TCP"}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/stablestudio/", "port": "http"}
    assert c["resources"]["requests"] == c["resources"]["limits"]
    assert c["resources"]["limits"]["cpu"] == "100m" and "nvidia.com/gpu" not in c["resources"]["limits"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert {v["name"]: v for v in spec["volumes"]}["tmp"]["emptyDir"]
    # No GPU node selection, no toleration: it runs on any node.
    assert "nodeSelector" not in spec and "tolerations" not in spec


def test_stablestudio_pods_are_not_selected_by_the_api_objects():
    result = run(studio_app())
    studio_labels = result.one("Deployment", "stable-diffusion-stablestudio")["spec"]["template"]["metadata"]["labels"]
    api_selectors = [
        result.one("Service", "stable-diffusion")["spec"]["selector"],
        result.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        result.one("NetworkPolicy", "stable-diffusion")["spec"]["podSelector"]["matchLabels"],
        result.one("Deployment", "stable-diffusion")["spec"]["selector"]["matchLabels"],
    ]
    for selector in api_selectors:
        assert not selector.items() <= studio_labels.items(), selector
    svc = result.one("Service", "stable-diffusion-stablestudio")
    assert svc["spec"]["selector"].items() <= studio_labels.items()
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080.0, "targetPort": "http", "protocol": "TCP"}]


@pytest.mark.parametrize("class_name", ["traefik", "nginx"])
def test_stablestudio_is_a_second_path_on_the_same_ingress(class_name):
    result = run(studio_app(class_name=class_name))
    (ingress,) = result.find("Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == HOST
    paths = {p["path"]: (p["pathType"], p["backend"]["service"]["name"]) for p in rule["http"]["paths"]}
    assert paths == {"/stablestudio": ("Prefix", "stable-diffusion-stablestudio"),
                     "/": ("Prefix", "stable-diffusion")}


def test_stablestudio_origin_is_merged_into_the_api_cors_origins():
    config = with_sd(studio_app(tls={"cluster_issuer": "le"}), cors_origins=["https://other.example"])
    e = env(container(run(config)))
    assert e["SD_CORS_ORIGINS"] == "https://other.example,https://sd.example.com"
    plain = env(container(run(studio_app())))
    assert plain["SD_CORS_ORIGINS"] == "http://sd.example.com"
    # Given already by the user: not repeated.
    again = env(container(run(with_sd(studio_app(), cors_origins=["http://sd.example.com"]))))
    assert again["SD_CORS_ORIGINS"] == "http://sd.example.com"


def test_stablestudio_network_policy_admits_only_the_ingress_controller():
    result = run(studio_app(class_name="nginx"))
    policy = result.one("NetworkPolicy", "stable-diffusion-stablestudio")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "stablestudio"
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["ingress-nginx"]
    assert rule["ports"] == [{"port": 8080.0, "protocol": "TCP"}]
    off = run(with_sd(studio_app(), replica_count=1) | {"network_policy": {"enabled": False}})
    assert off.find("NetworkPolicy") == []


def test_stablestudio_custom_path_port_digest_and_pull_secret():
    digest = "sha256:" + "d" * 64
    result = run(app(ingress_http={"host": HOST}, stablestudio={
        "enabled": True, "path": "/studio", "port": 3000, "replica_count": 2,
        "image": {"repository": "ghcr.io/acme/stablestudio", "digest": digest, "pull_secret": "regcred"}}))
    deployment = result.one("Deployment", "stable-diffusion-stablestudio")
    spec = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2.0
    assert spec["containers"][0]["image"] == f"ghcr.io/acme/stablestudio@{digest}"
    assert spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert spec["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/studio/"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    paths = [p["path"] for p in result.one("Ingress")["spec"]["rules"][0]["http"]["paths"]]
    assert paths == ["/studio", "/"]
    assert pod_spec(result)["containers"][0]["name"] == "inference"


def test_learned_upscalers_reach_the_server_and_the_init_container_as_sd_upscaler():
    # Issue 13: a learned upscaler is a component input as well as a server flag.
    config = with_sd(app(), upscalers=[{"repo": "acme/esrgan-x4", "name": "ESRGAN x4"},
                                       {"repo": "/models/upscalers/realesrgan"}])
    result = run(config)
    assert env(container(result))["SD_UPSCALER"] == "acme/esrgan-x4:ESRGAN x4,/models/upscalers/realesrgan:realesrgan"
    # The server loads them on first use; the init container's `download` fetches them first.
    assert env(container(result, "model-download"))["SD_UPSCALER"] == env(container(result))["SD_UPSCALER"]
    plain = run(app())
    assert "SD_UPSCALER" not in env(container(plain)) and "SD_UPSCALER" not in env(container(plain, "model-download"))


@pytest.mark.parametrize("upscalers,message", [
    ([{"repo": "a/b", "name": "Lanczos"}], "upscalers[0].name: upscaler name 'Lanczos' is a resampling upscaler's name"),
    ([{"repo": "a/x"}, {"repo": "b/x"}], "upscalers[1].name: upscaler name 'x' is used twice"),
    ([{"repo": "not a repo"}], "upscalers[0].repo"),
])
def test_bad_upscalers_are_refused_naming_the_path(upscalers, message):
    with pytest.raises(AppConfigError) as error:
        parse_app_config(with_sd(app(), upscalers=upscalers))
    assert f"stable-diffusion:app.stable_diffusion.{message}" in str(error.value)


# --- pinned LoRA and upscaler revisions ----------------------------------------------------


def test_pinned_lora_and_upscaler_revisions_reach_both_containers():
    sha = "0123456789abcdef0123456789abcdef01234567"
    config = with_sd(
        with_model(app(), loras=[{"repo": "acme/ink-lora", "name": "ink", "weight": 0.5, "revision": "refs/pr/1"},
                                 {"repo": "acme/pixel-lora"}]),
        upscalers=[{"repo": "acme/esrgan-x4", "name": "ESRGAN x4", "revision": sha}, {"repo": "acme/esrgan-x2"}],
    )
    result = run(config)
    for name in ("inference", "model-download"):  # the init container fetches exactly what the server loads
        e = env(container(result, name))
        assert e["SD_LORA"] == "acme/ink-lora@refs/pr/1:ink:0.5,acme/pixel-lora:pixel-lora:1", name
        assert e["SD_UPSCALER"] == f"acme/esrgan-x4@{sha}:ESRGAN x4,acme/esrgan-x2:esrgan-x2", name


@pytest.mark.parametrize("revision", ["a..b", "-x", "v1.lock", "refs//pr", "/main", "main/", ".hidden", "v1.", "a b", "v:1"])
def test_bad_revisions_are_refused_naming_the_path_and_value(revision):
    # What git refuses in a ref name (the server refuses it too, so the contract holds); the
    # model's revisions share the rule.
    sd = "stable-diffusion:app.stable_diffusion"
    for config, path in (
        (with_model(app(), loras=[{"repo": "a/b", "revision": revision}]), f"{LORA}[0].revision"),
        (with_sd(app(), upscalers=[{"repo": "a/b", "revision": revision}]), f"{sd}.upscalers[0].revision"),
        (with_model(app(), revision=revision), f"{sd}.hugging_face_model.revision"),
        (with_sd(app(), extra_models=[{"model_hf_name": "a/b", "revision": revision}]), f"{sd}.extra_models[0].revision"),
    ):
        with pytest.raises(AppConfigError) as error:
            parse_app_config(config)
        assert f"{path}: '{revision}' is not" in str(error.value), error.value


def test_a_revision_with_a_directory_in_the_pod_is_refused_naming_the_path():
    with pytest.raises(AppConfigError) as error:
        parse_app_config(with_model(app(), loras=[{"repo": "/models/loras/ink", "revision": "v1"}]))
    assert f"{LORA}[0].revision" in str(error.value) and "'/models/loras/ink' is a directory" in str(error.value)
    with pytest.raises(AppConfigError) as error:
        parse_app_config(with_sd(app(), upscalers=[{"repo": "/models/esrgan", "revision": "v1"}]))
    assert "upscalers[0].revision" in str(error.value) and "'/models/esrgan' is a directory" in str(error.value)
