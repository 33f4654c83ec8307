"""Each preset x node-pool mode lands its pods on the right GPU."""

from __future__ import annotations

import pytest

from components import BUILTIN_PRESETS, AppConfigError

from .helpers import app, container, pod_spec, run

# What each preset must select, per mode (docs/component.md, built-in presets); None = not placeable.
EXPECTED = {
    #              gpus  existing (gpu.product)      karpenter  gke accelerator
    "cpu-small":   (0, None, None, None),
    "gpu-t4-x1":   (1, "Tesla-T4", "t4", "nvidia-tesla-t4"),
    "gpu-l4-x1":   (1, "NVIDIA-L4", "l4", "nvidia-l4"),
    "gpu-a10g-x1": (1, "NVIDIA-A10G", "a10g", None),
    "gpu-l40s-x1": (1, "NVIDIA-L40S", "l40s", None),
    "gpu-a100-x1": (1, "NVIDIA-A100-SXM4-80GB", "a100", "nvidia-a100-80gb"),
    "gpu-h100-x1": (1, "NVIDIA-H100-80GB-HBM3", "h100", "nvidia-h100-80gb"),
    "gpu-h200-x1": (1, "NVIDIA-H200", "h200", "nvidia-h200-141gb"),
}
MODES = {
    "existing": "existing",
    "karpenter": {"mode": "karpenter"},
    "gke": {"mode": "gke", "cluster": "prod", "location": "us-central1"},
}
# Presets whose default GKE machine type has no on-demand capacity (cloud_rules).
SPOT_ONLY_ON_GKE = {"gpu-h100-x1"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def test_catalogue_is_the_designed_one():
    assert set(BUILTIN_PRESETS) == set(EXPECTED)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("preset", list(EXPECTED))
def test_preset_lands_on_its_gpu(preset, mode):
    gpus, product, karpenter, gke = EXPECTED[preset]
    node_pool = MODES[mode]
    if preset in SPOT_ONLY_ON_GKE and mode == "gke":
        node_pool = {**node_pool, "spot": True}
    config = app(preset={"name": preset}, node_pool=node_pool)
    if mode == "gke" and gpus and gke is None:
        with pytest.raises(Exception) as raised:
            run(config)
        assert "no GKE accelerator" in str(raised.value)
        return
    result = run(config)
    spec = pod_spec(result)
    limits = container(result)["resources"]["limits"]
    selector = spec.get("nodeSelector", {})
    if gpus:
        assert limits["nvidia.com/gpu"] == str(gpus)
        assert spec["tolerations"] == [GPU_TOLERATION]
    else:
        assert "nvidia.com/gpu" not in limits and "tolerations" not in spec

    if mode == "existing":
        assert selector == ({"nvidia.com/gpu.product": product} if gpus else {})
    elif mode == "karpenter":
        pool = result.one("NodePool")
        assert selector["karpenter.sh/nodepool"] == pool["metadata"]["name"]
        requirements = {r["key"]: r["values"] for r in pool["spec"]["template"]["spec"]["requirements"]}
        if gpus:
            assert selector["karpenter.k8s.aws/instance-gpu-name"] == karpenter
            assert requirements["karpenter.k8s.aws/instance-gpu-name"] == [karpenter]
            assert pool["spec"]["template"]["spec"]["taints"][0]["key"] == "nvidia.com/gpu"
        else:
            assert "karpenter.k8s.aws/instance-gpu-name" not in selector
            assert "karpenter.k8s.aws/instance-gpu-name" not in requirements
    else:
        (pool,) = result.of_type("gcp:container/nodePool:NodePool")
        assert selector["cloud.google.com/gke-nodepool"] == pool.inputs["name"]
        accelerators = pool.inputs["nodeConfig"].get("guestAccelerators")
        if gpus:
            assert selector["cloud.google.com/gke-accelerator"] == gke
            assert accelerators[0]["type"] == gke
            assert accelerators[0]["gpuDriverInstallationConfig"]["gpuDriverVersion"] == "LATEST"
        else:
            assert "cloud.google.com/gke-accelerator" not in selector and not accelerators


def test_eight_gpu_gke_machine_carries_eight_accelerators():
    result = run(app(preset={"name": "gpu-h200-x1"}, node_pool=MODES["gke"]))
    (pool,) = result.of_type("gcp:container/nodePool:NodePool")
    assert pool.inputs["nodeConfig"]["machineType"] == "a3-ultragpu-8g"
    assert pool.inputs["nodeConfig"]["guestAccelerators"][0]["count"] == 8.0
    assert container(result)["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_custom_preset_usable_with_karpenter_only_when_it_names_a_gpu():
    preset = {"gpu_count": 1, "cpu": "4", "memory": "16Gi", "gpu_product": "NVIDIA-RTX-6000"}
    with pytest.raises(AppConfigError) as raised:
        from components import parse_app_config

        parse_app_config(app(preset={"name": "rtx"}, presets={"rtx": preset}, node_pool="karpenter"))
    assert "no Karpenter GPU name" in str(raised.value)
