"""Node pools: where the pods run, and the pool objects that make those nodes exist.

`placement()` gives the pod's node selector and tolerations for the preset and mode;
`declare_node_pool()` declares what the mode needs:

- `existing`: nothing; pods select GPU Feature Discovery's `nvidia.com/gpu.product`.
- `karpenter`: a cluster-scoped `karpenter.sh/v1` NodePool restricted to the preset's
  GPU (`karpenter.k8s.aws/instance-gpu-name`), tainted `nvidia.com/gpu=true:NoSchedule`,
  with a GPU limit and an empty-node-only disruption policy (a consolidation must not
  evict a replica in the middle of a generation).
- `gke`: a pulumi-gcp `container.NodePool` with the preset's guest accelerator and
  managed driver installation. GKE taints GPU nodes `nvidia.com/gpu=present:NoSchedule`
  itself, so the pool declares no taint (declaring it would make a perpetual diff).

What the clouds accept (accelerators per machine type, capacity classes, label domains,
the Karpenter CRD's CEL rules) lives in `cloud_rules.py`; `config/` has refused what
breaks them before anything here runs. Node labels never use the `kubernetes.io` /
`k8s.io` domains: GKE and the kubelet refuse them on nodes, and Karpenter v1.0-v1.8
refuse them in a NodePool template. The object labels of the NodePool itself are
ordinary object metadata and keep the `app.kubernetes.io/*` set.

Every GPU pod also tolerates `nvidia.com/gpu` (any value) and requests `nvidia.com/gpu`
limits (set in workload.py), which is what finally binds it to a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from .cloud_rules import gke_accelerator_count, gke_capacity_warning, gke_machine
from .config import AppConfig, ExistingNodes, GkeNodePool, KarpenterNodePool
from .meta import Names
from .presets import (
    GKE_ACCELERATOR_LABEL,
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    KARPENTER_GPU_MEMORY_LABEL,
    KARPENTER_GPU_NAME_LABEL,
)

KARPENTER_NODEPOOL_LABEL = "karpenter.sh/nodepool"
GKE_NODEPOOL_LABEL = "cloud.google.com/gke-nodepool"
# Our own label on every node of a pool we declare: a domain of ours, never kubernetes.io.
POOL_NODE_LABEL = "stable-diffusion/pool"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True)
class Placement:
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict] = field(default_factory=list)
    # Whether the pool grows on demand, so a rolling update may surge one extra pod.
    elastic: bool = False


def placement(app: AppConfig, names: Names) -> Placement:
    preset = app.resolved_preset
    pool = app.node_pool
    tolerations = [dict(GPU_TOLERATION)] if preset.gpu_count else []
    if isinstance(pool, ExistingNodes):
        if pool.node_selector is not None:
            selector = dict(pool.node_selector)
        else:
            selector = {GPU_PRODUCT_LABEL: preset.gpu_product} if preset.gpu_count else {}
        return Placement(selector, tolerations, elastic=False)
    if isinstance(pool, KarpenterNodePool):
        selector = {KARPENTER_NODEPOOL_LABEL: names.node_pool}
        if preset.gpu_count:
            selector[KARPENTER_GPU_NAME_LABEL] = preset.karpenter_gpu_name
        return Placement(selector, tolerations, elastic=True)
    selector = {GKE_NODEPOOL_LABEL: names.node_pool}
    if preset.gpu_count:
        selector[GKE_ACCELERATOR_LABEL] = preset.gke_accelerator
    return Placement(selector, tolerations, elastic=True)


def declare_node_pool(
    app: AppConfig, names: Names, opts: pulumi.ResourceOptions
) -> Optional[pulumi.Resource]:
    pool = app.node_pool
    if isinstance(pool, KarpenterNodePool):
        return _karpenter(app, pool, names, opts)
    if isinstance(pool, GkeNodePool):
        return _gke(app, pool, names, opts)
    return None


def _karpenter(app: AppConfig, pool: KarpenterNodePool, names: Names, opts: pulumi.ResourceOptions):
    preset = app.resolved_preset
    # Enough for every replica plus one surging pod; at least one 8-GPU instance, because
    # some GPUs (A100 80 GB, H200) only come in 8-GPU instances on AWS.
    pods = app.stable_diffusion.max_replicas + 1
    requirements = [
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": list(pool.capacity_types)},
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
    ]
    if preset.gpu_count:
        requirements.append(
            {"key": KARPENTER_GPU_NAME_LABEL, "operator": "In", "values": [preset.karpenter_gpu_name]}
        )
        if preset.karpenter_min_gpu_memory_mib:
            requirements.append(
                {"key": KARPENTER_GPU_MEMORY_LABEL, "operator": "Gt",
                 "values": [str(preset.karpenter_min_gpu_memory_mib)]}
            )
        limits = {GPU_RESOURCE: str(max(8, pods * preset.gpu_count))}
        taints = [{"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}]
    else:
        requirements.append(
            {"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["c", "m", "r"]}
        )
        # Instances may be larger than one pod; leave room for that and the daemonsets.
        limits = {"cpu": str(max(16, math.ceil(pods * preset.cpu_cores * 4)))}
        taints = []
    template_spec = {
        "nodeClassRef": {"group": pool.node_class_group, "kind": pool.node_class_kind, "name": pool.node_class},
        "requirements": requirements,
        "expireAfter": pool.expire_after,
    }
    if taints:
        template_spec["taints"] = taints
    return k8s.apiextensions.CustomResource(
        f"{names.base}-nodepool",
        api_version="karpenter.sh/v1",
        kind="NodePool",
        metadata={"name": names.node_pool, "labels": names.labels("node-pool")},
        spec={
            "template": {
                "metadata": {"labels": {POOL_NODE_LABEL: names.node_pool}},
                "spec": template_spec,
            },
            "limits": limits,
            "disruption": {
                # Only empty nodes are removed: consolidating a busy GPU node would evict
                # a replica mid-generation to save little.
                "consolidationPolicy": "WhenEmpty",
                "consolidateAfter": pool.consolidate_after,
                "budgets": [{"nodes": "1"}],
            },
        },
        opts=opts,
    )


def _gke(app: AppConfig, pool: GkeNodePool, names: Names, opts: pulumi.ResourceOptions):
    preset = app.resolved_preset
    machine_type = pool.machine_type or preset.gke_machine_type
    pods = app.stable_diffusion.max_replicas + 1
    accelerators = []
    if preset.gpu_count:
        per_node = gke_accelerator_count(machine_type, preset.gke_accelerator, preset.gpu_count)
        # An 8-GPU node (a3-ultragpu-8g) holds 8 one-GPU replicas.
        max_nodes = pool.max_node_count or math.ceil(pods / (per_node // preset.gpu_count))
        warning = gke_capacity_warning(gke_machine(machine_type), pool.spot, pool.flex_start, pool.reservation)
        if warning:
            pulumi.log.warn(f"stable-diffusion:app.node_pool: {warning}")
        accelerators = [
            gcp.container.NodePoolNodeConfigGuestAcceleratorArgs(
                type=preset.gke_accelerator,
                count=per_node,
                gpu_driver_installation_config=gcp.container.NodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfigArgs(
                    gpu_driver_version=pool.gpu_driver_version,
                ),
            )
        ]
    else:
        max_nodes = pool.max_node_count or pods
    return gcp.container.NodePool(
        f"{names.base}-nodepool",
        name=names.node_pool,
        cluster=pool.cluster,
        location=pool.location,
        project=pool.project,
        autoscaling=gcp.container.NodePoolAutoscalingArgs(
            min_node_count=pool.min_node_count,
            max_node_count=max(max_nodes, pool.min_node_count, 1),
        ),
        management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
        node_config=gcp.container.NodePoolNodeConfigArgs(
            machine_type=machine_type,
            disk_size_gb=pool.disk_size_gb,
            spot=pool.spot,
            flex_start=pool.flex_start or None,
            reservation_affinity=_reservation_affinity(pool),
            guest_accelerators=accelerators or None,
            labels={POOL_NODE_LABEL: names.node_pool},
            oauth_scopes=["https://www.googleapis.com/auth/cloud-platform"],
            workload_metadata_config=gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
            shielded_instance_config=gcp.container.NodePoolNodeConfigShieldedInstanceConfigArgs(
                enable_secure_boot=True, enable_integrity_monitoring=True,
            ),
        ),
        opts=opts,
    )


def _reservation_affinity(pool: GkeNodePool):
    if pool.reservation:
        return gcp.container.NodePoolNodeConfigReservationAffinityArgs(
            consume_reservation_type="SPECIFIC_RESERVATION",
            key="compute.googleapis.com/reservation-name",
            values=[pool.reservation],
        )
    if pool.flex_start:
        # Flex-start capacity comes from Dynamic Workload Scheduler, never a reservation.
        return gcp.container.NodePoolNodeConfigReservationAffinityArgs(consume_reservation_type="NO_RESERVATION")
    return None
