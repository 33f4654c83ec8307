"""Node pools the cloud and Karpenter accept: labels, accelerator counts, capacity (issue 11).

The GKE rules come from `components/cloud_rules.py`, the Karpenter NodePool CRD's rules
from `cel_rules.py` (per release) and the CRD schema (`crd_schemas.py`); each cites its
source. The tests render real configs and check the pools against them.
"""

from __future__ import annotations

import functools

import pulumi
import pytest

from components import BUILTIN_PRESETS, AppConfigError, parse_app_config
from components.cloud_rules import (
    GKE_ACCELERATORS,
    GKE_FIXED_GPU_MACHINES,
    KARPENTER_GPU_FAMILIES,
    ON_DEMAND,
    RESERVATION,
    SPOT_OR_FLEX_START,
    GkeMachineMismatch,
    UnknownMachineType,
    gke_accelerator_count,
    gke_machine,
    is_restricted_node_label,
)

from . import cel_rules, crd_schemas
from .helpers import app, container, run, with_sd

GKE = {"mode": "gke", "cluster": "prod", "location": "us-central1"}
GPU_PRESETS = [name for name, p in BUILTIN_PRESETS.items() if p.gpu_count]
GKE_PRESETS = ["cpu-small"] + [n for n in GPU_PRESETS if BUILTIN_PRESETS[n].gke_accelerator]
KARPENTER_PRESETS = ["cpu-small"] + [n for n in GPU_PRESETS if BUILTIN_PRESETS[n].karpenter_gpu_name]


def gke_pool(result):
    (pool,) = result.of_type("gcp:container/nodePool:NodePool")
    return pool.inputs


def gke_app(preset: str, **pool) -> dict:
    node_pool = {**GKE, **pool}
    if gke_machine(pool.get("machine_type") or BUILTIN_PRESETS[preset].gke_machine_type).capacity == SPOT_OR_FLEX_START:
        node_pool.setdefault("spot", True)
    return app(preset={"name": preset}, node_pool=node_pool)


def refusal(config: dict) -> str:
    with pytest.raises(AppConfigError) as raised:
        parse_app_config(config)
    return str(raised.value)


# --- finding 1: GKE node labels ----------------------------------------------------------

@pytest.mark.parametrize("preset", GKE_PRESETS)
def test_gke_node_labels_avoid_kubernetes_domains(preset):
    labels = gke_pool(run(gke_app(preset)))["nodeConfig"]["labels"]
    assert labels, "the pool labels its nodes with our own key"
    assert [key for key in labels if is_restricted_node_label(key)] == []


def test_restricted_node_label_domains():
    assert is_restricted_node_label("app.kubernetes.io/part-of")
    assert is_restricted_node_label("kubernetes.io/role")
    assert is_restricted_node_label("node.k8s.io/x")
    assert not is_restricted_node_label("stable-diffusion/pool")
    assert not is_restricted_node_label("example.com/kubernetes.io")


# --- finding 2: Karpenter NodePool CEL rules ---------------------------------------------

@functools.cache
def karpenter_pool(preset: str) -> dict:
    return run(app(preset={"name": preset}, node_pool="karpenter")).one("NodePool")


@pytest.mark.parametrize("preset", KARPENTER_PRESETS)
def test_karpenter_nodepool_satisfies_every_v1_crd(preset):
    pool = karpenter_pool(preset)
    assert cel_rules.violations(pool) == []
    template_labels = pool["spec"]["template"]["metadata"]["labels"]
    assert not any(k.split("/")[0].endswith("kubernetes.io") for k in template_labels)
    # The NodePool's own metadata is object metadata, which no CRD rule covers.
    assert pool["metadata"]["labels"]["app.kubernetes.io/component"] == "node-pool"


@pytest.mark.parametrize("key, problem", [
    ("app.kubernetes.io/part-of", 'label domain "kubernetes.io" is restricted'),
    ("kubernetes.io/hostname", 'label "kubernetes.io/hostname" is restricted'),
    ("karpenter.sh/nodepool", 'label "karpenter.sh/nodepool" is restricted'),
    ("karpenter.sh/anything", 'label domain "karpenter.sh" is restricted'),
    ("karpenter.k8s.aws/made-up", 'label domain "karpenter.k8s.aws" is restricted'),
    ("sigs.k8s.io/x", 'label domain "k8s.io" is restricted'),
    ("kubernetes.io/arch", None),
    ("node.kubernetes.io/instance-type", None),
    ("node-restriction.kubernetes.io/team", None),
    ("karpenter.sh/capacity-type", None),
    ("karpenter.k8s.aws/instance-gpu-name", None),
    ("karpenter.k8s.aws/instance-gpu-memory", None),
    ("stable-diffusion/pool", None),
])
def test_karpenter_label_domain_rules(key, problem):
    found = "\n".join(cel_rules.label_key_problems(key))
    assert (found == "") if problem is None else (problem in found)


def test_karpenter_nodepool_of_every_preset_matches_the_crd_schema():
    """Label values, the node class reference, operators, limits, weight: the CRD's schema."""
    pools = [karpenter_pool(preset) for preset in KARPENTER_PRESETS]
    assert [errors for errors in crd_schemas.validate(pools) if errors] == []


def test_karpenter_rules_catch_what_the_crd_refuses():
    spec = {
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/name": "x"}},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "requirements": [
                    {"key": "karpenter.k8s.aws/instance-gpu-memory", "operator": "Gt", "values": ["1", "2"]},
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": []},
                ],
            },
        },
        "disruption": {"consolidationPolicy": "WhenUnderutilized", "budgets": [{"nodes": 1}]},
    }
    problems = "\n".join(cel_rules.violations({"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "spec": spec}))
    for expected in ('label domain "kubernetes.io"', "single positive integer", "'In' must have a value",
                     "consolidateAfter: required", "WhenUnderutilized", "budgets[0].nodes"):
        assert expected in problems


# --- finding 3: GKE accelerator count follows the machine type ---------------------------

@pytest.mark.parametrize("machine, count", [
    ("g2-standard-4", 1), ("g2-standard-8", 1), ("g2-standard-12", 1), ("g2-standard-16", 1),
    ("g2-standard-24", 2), ("g2-standard-32", 1), ("g2-standard-48", 4), ("g2-standard-96", 8),
])
def test_l4_pool_declares_the_machine_types_gpus(machine, count):
    result = run(with_sd(gke_app("gpu-l4-x1", machine_type=machine), replica_count=3))
    config = gke_pool(result)["nodeConfig"]
    assert config["machineType"] == machine
    assert config["guestAccelerators"][0]["count"] == count
    assert container(result)["resources"]["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize("preset, machine, fits", [
    ("gpu-l4-x1", "a2-highgpu-1g", "g2-standard-4"),  # the wrong GPU
    ("gpu-l4-x1", "e2-standard-8", "g2-standard-4"),  # no GPU at all
    ("gpu-a100-x1", "a2-highgpu-1g", "a2-ultragpu-1g"),  # A100 40 GB, not 80 GB
    ("gpu-h200-x1", "a3-highgpu-8g", "a3-ultragpu-8g"),
    ("gpu-t4-x1", "n1-standard-64", "at most 48"),  # one T4 allows at most 48 vCPUs
    ("gpu-t4-x1", "g2-standard-8", "n1-standard"),
])
def test_machine_type_without_the_presets_gpu_is_refused(preset, machine, fits):
    message = refusal(app(preset={"name": preset}, node_pool={**GKE, "machine_type": machine}))
    assert "stable-diffusion:app.node_pool.machine_type" in message and machine in message
    assert fits in message


def test_machine_with_fewer_gpus_than_a_pod_requests_is_refused():
    two_l4 = {"gpu_count": 2, "cpu": "8", "memory": "32Gi", "gke_accelerator": "nvidia-l4",
              "gke_machine_type": "g2-standard-8"}
    message = refusal(app(preset={"name": "l4x2"}, presets={"l4x2": two_l4}, node_pool=GKE))
    assert "stable-diffusion:app.node_pool.machine_type" in message
    assert "fewer than the 2 each pod requests" in message and "preset 'l4x2'" in message
    result = run(app(preset={"name": "l4x2"}, presets={"l4x2": two_l4},
                     node_pool={**GKE, "machine_type": "g2-standard-24"}))
    assert gke_pool(result)["nodeConfig"]["guestAccelerators"][0]["count"] == 2


def test_unknown_accelerator_optimized_machine_is_refused():
    message = refusal(app(node_pool={**GKE, "machine_type": "g2-standard-6"}))
    assert "stable-diffusion:app.node_pool.machine_type" in message and "not a known GPU machine type" in message


def test_eight_gpu_node_holds_eight_replicas():
    result = run(with_sd(gke_app("gpu-h200-x1", reservation="h200-block"), replica_count=9))
    pool = gke_pool(result)
    assert pool["nodeConfig"]["guestAccelerators"][0]["count"] == 8
    assert pool["autoscaling"]["maxNodeCount"] == 2  # 10 pods (9 + a surging one) on 8 GPUs per node
    assert container(result)["resources"]["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize("preset", [n for n in GPU_PRESETS if BUILTIN_PRESETS[n].gke_accelerator])
def test_builtin_gke_defaults_carry_their_accelerator(preset):
    p = BUILTIN_PRESETS[preset]
    assert p.gke_accelerator in GKE_ACCELERATORS
    assert gke_accelerator_count(p.gke_machine_type, p.gke_accelerator, p.gpu_count) >= p.gpu_count


def test_builtin_karpenter_gpu_names_are_known():
    for preset in GPU_PRESETS:
        assert BUILTIN_PRESETS[preset].karpenter_gpu_name in KARPENTER_GPU_FAMILIES


def test_machine_table_is_consistent():
    assert gke_machine("a3-ultragpu-8g").accelerator == "nvidia-h200-141gb"
    assert gke_machine("a2-megagpu-16g").count == 16
    assert gke_machine("n1-standard-8").attachable["nvidia-tesla-t4"] == (1, 2, 4)
    assert gke_machine("e2-standard-4").count == 0
    for machine in GKE_FIXED_GPU_MACHINES.values():
        assert machine.accelerator in GKE_ACCELERATORS and machine.count >= 1
        assert machine.capacity in (ON_DEMAND, SPOT_OR_FLEX_START, RESERVATION)
    with pytest.raises(UnknownMachineType):
        gke_machine("a3-highgpu-3g")
    with pytest.raises(GkeMachineMismatch):
        gke_accelerator_count("n1-standard-8", "nvidia-tesla-t4", 8)


# --- finding 8: capacity that cannot be had ----------------------------------------------

@pytest.mark.parametrize("machine", ["a3-highgpu-1g", "a3-highgpu-2g", "a3-highgpu-4g"])
def test_on_demand_pool_on_spot_only_machine_is_refused(machine):
    message = refusal(app(preset={"name": "gpu-h100-x1"}, node_pool={**GKE, "machine_type": machine}))
    assert "stable-diffusion:app.node_pool.spot" in message
    assert "node_pool.flex_start: true" in message and "a3-highgpu-8g" in message


def test_spot_or_flex_start_makes_it_obtainable():
    spot = gke_pool(run(app(preset={"name": "gpu-h100-x1"}, node_pool={**GKE, "spot": True})))
    assert spot["nodeConfig"]["spot"] is True and "flexStart" not in spot["nodeConfig"]
    flex = gke_pool(run(app(preset={"name": "gpu-h100-x1"}, node_pool={**GKE, "flex_start": True})))
    assert flex["nodeConfig"]["flexStart"] is True and flex["nodeConfig"]["spot"] is False
    assert flex["nodeConfig"]["reservationAffinity"] == {"consumeReservationType": "NO_RESERVATION"}
    on_demand_8 = gke_pool(run(app(preset={"name": "gpu-h100-x1"},
                                   node_pool={**GKE, "machine_type": "a3-highgpu-8g"})))
    assert on_demand_8["nodeConfig"]["guestAccelerators"][0]["count"] == 8


def test_reserved_capacity_warns_with_the_fix(monkeypatch):
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *a, **k: warnings.append(message))
    run(app(preset={"name": "gpu-h200-x1"}, node_pool=GKE))
    (warning,) = [w for w in warnings if "a3-ultragpu-8g" in w]
    assert "node_pool.reservation" in warning and "node_pool.flex_start" in warning
    warnings.clear()
    pool = gke_pool(run(app(preset={"name": "gpu-h200-x1"}, node_pool={**GKE, "reservation": "h200-block"})))
    assert not [w for w in warnings if "a3-ultragpu-8g" in w]
    assert pool["nodeConfig"]["reservationAffinity"] == {
        "consumeReservationType": "SPECIFIC_RESERVATION",
        "key": "compute.googleapis.com/reservation-name", "values": ["h200-block"]}


def test_consumption_options_exclude_each_other():
    message = refusal(app(node_pool={**GKE, "spot": True, "reservation": "r1"}))
    assert "stable-diffusion:app.node_pool" in message and "spot and reservation exclude each other" in message
