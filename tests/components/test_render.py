"""`python -m infra.render`, and the rendered objects against kubernetes-validate and checkov.

A matrix of configs (the dev and prod stacks, and a covering set of node-pool mode x
ingress class x auth x TLS x autoscaling x StableStudio x LoRAs x models, plus every
HF-token and cache shape) is rendered once per session (conftest.py); every built-in
object must pass `kubernetes-validate --strict` for Kubernetes TARGET_K8S, and checkov's
Kubernetes checks run once over all of them (checkov is slow to start). The custom
objects are checked by test_custom_resources.py, the server contract by test_contract.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from . import crd_schemas, helpers, image_rules
from .checkov_skips import CHECKOV_SKIPS

ROOT = Path(__file__).resolve().parents[2]
TARGET_K8S = "1.31.0"
PROM = "http://prometheus-server.monitoring.svc:9090"


def _matrix() -> dict[str, dict]:
    dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]["stable-diffusion:app"]
    prod = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]["stable-diffusion:app"]
    karpenter = helpers.with_sd(
        helpers.with_model(
            helpers.app(preset={"name": "gpu-l4-x1"}, node_pool={"mode": "karpenter"},
                        ingress_http={"class_name": "nginx", "host": "sd.example.com",
                                      "tls": {"cluster_issuer": "letsencrypt"}}),
            hf_token={"key": "hfToken"}, cache={"storage_class": "efs-sc", "size": "100Gi"}),
        autoscaling={"min_replicas": 0, "max_replicas": 4, "prometheus_url": PROM},
    )
    gke = helpers.with_model(
        helpers.app(preset={"name": "gpu-a100-x1"},
                    node_pool={"mode": "gke", "cluster": "prod", "location": "us-central1"},
                    ingress_http={"auth": False, "host": "sd.example.com", "tls": {"secret_name": "sd-cert"}},
                    image={"build": {"registry": "us-docker.pkg.dev/acme/sd"}}),
        hf_token={"secret_name": "hf", "secret_key": "token"},
    )
    existing_h100 = helpers.with_sd(
        helpers.with_model(helpers.app(preset={"name": "gpu-h100-x1"}, namespace="sd-h100"),
                           hf_token="hf_literal_token",
                           cache={"storage_class": "gp3", "access_mode": "ReadWriteOnce"}),
        autoscaling={"min_replicas": 1, "max_replicas": 3, "prometheus_url": PROM},
    )
    custom_t4 = helpers.with_sd(
        helpers.app(preset={"name": "gpu-t4-x2"},
                    presets={"gpu-t4-x2": {"gpu_count": 2, "cpu": "7", "memory": "28Gi",
                                           "gpu_product": "Tesla-T4", "karpenter_gpu_name": "t4"}},
                    image={"repository": "ghcr.io/acme/sd", "digest": "sha256:" + "c" * 64,
                           "pull_secret": "regcred"}),
        replica_count=2,
    )
    studio_models = helpers.with_sd(
        helpers.with_model(
            helpers.app(preset={"name": "gpu-l40s-x1"}, namespace="sd-studio",
                        ingress_http={"host": "studio.example.com", "tls": {"secret_name": "studio-cert"},
                                      "trusted_proxies": ["10.42.0.0/16"]},
                        stablestudio={"enabled": True,
                                      "image": {"repository": "ghcr.io/acme/stablestudio", "tag": "2024.1"}}),
            revision="main",
            loras=[{"repo": "latent-consistency/lcm-lora-sdv1-5", "name": "lcm", "weight": 0.8, "revision": "refs/pr/1"},
                   {"repo": "/models/loras/pixel-art", "weight": -0.5}]),
        extra_models=[{"model_hf_name": "stabilityai/sdxl-turbo", "revision": "71153311"},
                      {"model_hf_name": "runwayml/stable-diffusion-v1-5"}],
        max_loaded_models=2, cors_origins=["https://app.example.com"],
        upscalers=[{"repo": "acme/esrgan-x4", "name": "ESRGAN x4", "revision": "0123456789abcdef0123456789abcdef01234567"},
                   {"repo": "acme/esrgan-x2", "name": "ESRGAN x2"}],
    )
    # The covering set: with the configs above, each node-pool mode meets each ingress
    # class, auth, TLS kind, autoscaling kind, StableStudio and LoRAs at least once
    # (test_matrix_covers_modes_presets_and_options checks it).
    studio = {"enabled": True, "image": {"repository": "ghcr.io/acme/stablestudio", "tag": "2024.1"}}
    existing_nginx = helpers.with_sd(
        helpers.with_model(
            helpers.app(preset={"name": "gpu-a10g-x1"}, namespace="sd-nginx",
                        ingress_http={"class_name": "nginx", "auth": False, "host": "xl.example.com",
                                      "tls": {"cluster_issuer": "letsencrypt"}}),
            model_hf_name="stabilityai/stable-diffusion-xl-base-1.0"),
        autoscaling={"min_replicas": 0, "max_replicas": 2, "prometheus_url": PROM},
    )
    karpenter_studio = helpers.with_sd(
        helpers.with_model(
            helpers.app(preset={"name": "gpu-l4-x1"}, node_pool={"mode": "karpenter", "capacity_types": ["spot"]},
                        ingress_http={"auth": False, "host": "k.example.com", "tls": {"secret_name": "k-cert"}},
                        stablestudio=studio),
            model_hf_name="runwayml/stable-diffusion-v1-5",
            loras=[{"repo": "latent-consistency/lcm-lora-sdv1-5", "name": "lcm"}]),
        autoscaling={"min_replicas": 1, "max_replicas": 3, "prometheus_url": PROM},
    )
    karpenter_cpu = helpers.app(preset={"name": "cpu-small"}, node_pool="karpenter")
    gke_studio = helpers.with_sd(
        helpers.with_model(
            helpers.app(preset={"name": "gpu-l4-x1"},
                        node_pool={"mode": "gke", "cluster": "prod", "location": "europe-west4"},
                        ingress_http={"class_name": "nginx", "host": "g.example.com",
                                      "tls": {"cluster_issuer": "letsencrypt"}},
                        stablestudio=studio),
            model_hf_name="stabilityai/sdxl-turbo",
            loras=[{"repo": "/models/loras/pixel-art", "name": "pixel", "weight": 0.7}]),
        autoscaling={"min_replicas": 0, "max_replicas": 2, "prometheus_url": PROM},
    )
    gke_t4 = helpers.with_sd(
        helpers.app(preset={"name": "gpu-t4-x1"},
                    node_pool={"mode": "gke", "cluster": "dev", "location": "us-central1-a", "spot": True}),
        autoscaling={"min_replicas": 1, "max_replicas": 2, "prometheus_url": PROM},
    )
    return {
        "dev": dev,
        "prod": prod,
        "existing-l40s-stablestudio-loras-models": studio_models,
        "karpenter-l4-keda-nginx-tls": karpenter,
        "gke-a100-noauth-tls-build": gke,
        "existing-h100-keda-rwo": existing_h100,
        "existing-custom-t4x2": custom_t4,
        "existing-a10g-nginx-noauth-issuer-zero-sdxl": existing_nginx,
        "karpenter-l4-spot-noauth-secret-keda1-studio-lora-sd15": karpenter_studio,
        "karpenter-cpu-plain": karpenter_cpu,
        "gke-l4-nginx-issuer-zero-studio-lora-sdxlturbo": gke_studio,
        "gke-t4-spot-notls-keda1": gke_t4,
    }


MATRIX = _matrix()


def _objects(paths):
    return [yaml.safe_load(p.read_text()) for p in paths]


def _option_values(config: dict) -> dict[str, object]:
    """The matrix dimensions of one config, as comparable values."""
    ingress = config.get("ingress_http", {})
    scaling = config["stable_diffusion"].get("autoscaling")
    tls = ingress.get("tls")
    return {
        "ingress class": ingress.get("class_name", "traefik"),
        "auth": ingress.get("auth", True),
        "tls": "none" if tls is None else "issuer" if "cluster_issuer" in tls else "secret",
        "autoscaling": "off" if scaling is None else f"from {scaling.get('min_replicas', 0)}",
        "stablestudio": bool(config.get("stablestudio", {}).get("enabled")),
        "loras": bool(config["stable_diffusion"]["hugging_face_model"].get("loras")),
    }


def test_matrix_covers_modes_presets_and_options():
    presets = {c["preset"]["name"] for c in MATRIX.values()}
    modes = {image_rules.pool_mode(c) for c in MATRIX.values()}
    assert modes == {"existing", "karpenter", "gke"}
    assert len(presets - {"cpu-small"}) >= 4
    every = {"ingress class": {"traefik", "nginx"}, "auth": {True, False},
             "tls": {"none", "secret", "issuer"}, "autoscaling": {"off", "from 0", "from 1"},
             "stablestudio": {True, False}, "loras": {True, False}}
    for mode in modes:
        seen: dict[str, set] = {dimension: set() for dimension in every}
        for config in MATRIX.values():
            if image_rules.pool_mode(config) == mode:
                for dimension, value in _option_values(config).items():
                    seen[dimension].add(value)
        assert seen == every, mode
    models = {c["stable_diffusion"]["hugging_face_model"]["model_hf_name"] for c in MATRIX.values()}
    assert len(models) >= 4
    assert any(c["stable_diffusion"].get("extra_models") for c in MATRIX.values())
    # Some config declares a PodMonitor, so its upstream schema is checked too.
    assert any(c.get("monitoring", {}).get("pod_monitor") for c in MATRIX.values())


def test_every_config_renders_the_expected_kinds(rendered):
    for name, paths in rendered.items():
        kinds = {o["kind"] for o in _objects(paths)}
        assert {"Namespace", "ServiceAccount", "Deployment", "Service", "Ingress",
                "NetworkPolicy", "PodDisruptionBudget"} <= kinds, name
        config = MATRIX[name]
        assert ("ScaledObject" in kinds) == ("autoscaling" in config["stable_diffusion"]), name
        mode = config.get("node_pool")
        karpenter = mode == "karpenter" or isinstance(mode, dict) and mode["mode"] == "karpenter"
        assert ("NodePool" in kinds) == karpenter, name
        studio = [o for o in _objects(paths) if o["metadata"]["name"].endswith("-stablestudio")]
        expected = {"Deployment", "Service", "NetworkPolicy"} if config.get("stablestudio") else set()
        assert {o["kind"] for o in studio} == expected, name


def test_rendered_secrets_are_redacted(rendered):
    text = "".join(p.read_text() for paths in rendered.values() for p in paths)
    assert "hf_literal_token" not in text
    for paths in rendered.values():
        for obj in _objects(paths):
            if obj["kind"] == "Secret":
                assert set(obj["stringData"].values()) == {"<redacted>"}


def test_kubernetes_validate_strict(rendered):
    # Custom resources are checked against their CRDs in test_custom_resources.py.
    builtin = [p for paths in rendered.values() for p in paths if not crd_schemas.is_custom(yaml.safe_load(p.read_text()))]
    assert len(builtin) >= 35
    validator = Path(sys.executable).parent / "kubernetes-validate"
    proc = subprocess.run(
        [str(validator), "--strict", "-k", TARGET_K8S, *map(str, builtin)],
        capture_output=True, text=True, timeout=300,
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    assert report.count(" passed for resource ") == len(builtin), report


def _checkov() -> str:
    configured = os.environ.get("CHECKOV")
    if configured:
        assert os.access(configured, os.X_OK), f"CHECKOV={configured} is not executable"
        return configured
    default = ROOT / ".venv-checkov" / "bin" / "checkov"
    if default.exists():
        return str(default)
    found = shutil.which("checkov")
    if not found:
        pytest.skip("checkov not installed (make install creates .venv-checkov; make test sets CHECKOV)")
    return found


def test_checkov_kubernetes_checks(rendered):
    directory = next(iter(rendered.values()))[0].parent.parent
    proc = subprocess.run(
        [_checkov(), "-d", str(directory), "--framework", "kubernetes", "--output", "json",
         "--quiet", "--compact", "--skip-download", "--soft-fail"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    start = proc.stdout.find("{")
    assert start >= 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout[start:])
    summary = report["summary"]
    failed = report["results"]["failed_checks"]
    unexpected = sorted({(f["check_id"], f["check_name"], f["file_path"]) for f in failed
                         if f["check_id"] not in CHECKOV_SKIPS})
    assert not unexpected, "checkov failures not in checkov_skips.py:\n" + "\n".join(map(str, unexpected))
    used = {f["check_id"] for f in failed}
    assert set(CHECKOV_SKIPS) <= used, f"stale skips (no longer failing): {set(CHECKOV_SKIPS) - used}"
    assert summary["passed"] > 100
    print(f"\ncheckov: {summary['passed']} passed, {len(failed)} failed-and-skipped "
          f"({', '.join(sorted(used))}), parsing errors {summary['parsing_errors']}")
    assert summary["parsing_errors"] == 0


# --- the command line --------------------------------------------------------------------


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.render", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_renders_the_dev_stack(tmp_path):
    proc = _cli("--stack", "dev", "--out", str(tmp_path / "dev"))
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (tmp_path / "dev").iterdir())
    assert names[0].startswith("00-namespace-")
    assert any(n.startswith("50-deployment-") for n in names)
    assert f"rendered {len(names)} Kubernetes objects" in proc.stdout


def test_cli_secure_config_values_render_redacted(tmp_path):
    stack = tmp_path / "Pulumi.sec.yaml"
    config = helpers.with_model(helpers.app(), hf_token={"key": "hfToken"})
    stack.write_text(yaml.safe_dump({"config": {
        helpers.APP_KEY: config,
        "stable-diffusion:hfToken": {"secure": "v1:AAAAencryptedAAAA"},
    }}))
    proc = _cli("--config", str(stack), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    secret = yaml.safe_load((tmp_path / "out" / "20-secret-stable-diffusion-hf-token.yaml").read_text())
    assert secret["stringData"] == {"token": "<redacted>"}
    assert "v1:AAAA" not in "".join(p.read_text() for p in (tmp_path / "out").iterdir())


def test_cli_invalid_config_exits_1_and_writes_nothing(tmp_path):
    stack = tmp_path / "Pulumi.bad.yaml"
    stack.write_text(yaml.safe_dump({"config": {helpers.APP_KEY: helpers.app(preset={"name": "gpu-b300-x1"})}}))
    proc = _cli("--config", str(stack), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert "stable-diffusion:app.preset.name: unknown preset 'gpu-b300-x1'" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_missing_stack_file(tmp_path):
    proc = _cli("--stack", "nope", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Pulumi.nope.yaml" in proc.stderr


def test_cli_secure_value_inside_the_app_object_renders_redacted(tmp_path):
    # `pulumi config set --secret --path 'stable-diffusion:app.stable_diffusion.hugging_face_model.hf_token'`
    stack = tmp_path / "Pulumi.nested.yaml"
    config = helpers.with_model(helpers.app(), hf_token={"secure": "v1:BBBBencryptedBBBB"})
    stack.write_text(yaml.safe_dump({"config": {helpers.APP_KEY: config}}))
    proc = _cli("--config", str(stack), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    secret = yaml.safe_load((tmp_path / "out" / "20-secret-stable-diffusion-hf-token.yaml").read_text())
    assert secret["stringData"] == {"token": "<redacted>"}


def test_cli_missing_secret_config_key_exits_1(tmp_path):
    stack = tmp_path / "Pulumi.nokey.yaml"
    config = helpers.with_model(helpers.app(), hf_token={"key": "hfToken"})
    stack.write_text(yaml.safe_dump({"config": {helpers.APP_KEY: config}}))
    proc = _cli("--config", str(stack), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert "stable-diffusion:hfToken" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_renders_the_prod_stack_with_its_secret_redacted(tmp_path):
    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    placeholder = document["config"]["stable-diffusion:hfToken"]["secure"]
    proc = _cli("--stack", "prod", "--out", str(tmp_path / "prod"))
    assert proc.returncode == 0, proc.stderr
    files = {p.name: yaml.safe_load(p.read_text()) for p in (tmp_path / "prod").iterdir()}
    kinds = {o["kind"] for o in files.values()}
    assert {"NodePool", "ScaledObject", "Ingress", "PersistentVolumeClaim"} <= kinds
    token = files["20-secret-stable-diffusion-hf-token.yaml"]
    assert token["stringData"] == {"token": "<redacted>"}
    assert placeholder not in "".join(p.read_text() for p in (tmp_path / "prod").iterdir())
    ingress = next(o for o in files.values() if o["kind"] == "Ingress")
    assert ingress["spec"]["tls"][0]["hosts"] == ["sd.example.com"]
    deployment = next(o for o in files.values() if o["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SD_REVISION"] == document["config"]["stable-diffusion:app"]["stable_diffusion"][
        "hugging_face_model"]["revision"]


def test_render_is_deterministic(tmp_path):
    first = _cli("--stack", "dev", "--out", str(tmp_path / "a"))
    second = _cli("--stack", "dev", "--out", str(tmp_path / "b"))
    assert first.returncode == second.returncode == 0
    a = {p.name: p.read_text() for p in (tmp_path / "a").iterdir()}
    b = {p.name: p.read_text() for p in (tmp_path / "b").iterdir()}
    assert a == b and len(a) == 9  # the dev stack: 9 objects, the peers Service among them
    deployment = next(text for name, text in a.items() if "deployment" in name)
    assert deployment.startswith("apiVersion: apps/v1\nkind: Deployment\nmetadata:")
