"""Rules the clouds and Karpenter apply to node pools, as data with their sources.

Offline schema checks cannot see these: a GKE API rule, a kubelet flag check or a custom
resource's CEL rule only shows up at `pulumi up`. This module is the single place they
live; `config/` refuses configs that break them, `node_pools.py` renders pools from
them, and the tests check every rendered pool against them.

API
---
GKE (pulumi-gcp `container.NodePool`):

- `gke_machine(machine_type) -> GkeMachine(machine_type, accelerator, count, capacity,
  attachable)`. Fixed-GPU machine types (a2, a3, a4, g2, g4) carry `accelerator` (the GKE
  accelerator type, e.g. `nvidia-l4`) and `count` GPUs per node. `n1-*` carries no GPU of
  its own but can attach some (`attachable`: accelerator -> allowed counts). Other
  families (e2, n2, c3, ...) have no GPU (`accelerator None`, `count 0`). A name in an
  accelerator-optimized family that is not in the table raises `UnknownMachineType`.
- `gke_accelerator_count(machine_type, accelerator, gpus_per_pod) -> int`: the
  `guest_accelerator.count` a node pool of that machine type must declare for pods that
  each request `gpus_per_pod` GPUs of `accelerator`; raises `GkeMachineMismatch` (its
  message says what would fit) when the machine cannot carry them.
- `gke_machines_for(accelerator) -> list[str]`: the fixed-GPU machine types of an
  accelerator (or, for an n1-attachable one, `n1-standard-8`-style hints).
- `GKE_ACCELERATORS` / `gke_accelerator_label(accelerator) -> str`: accelerator type ->
  the value of `cloud.google.com/gke-accelerator` on its nodes.
- Capacity classes (`GkeMachine.capacity`): `ON_DEMAND` (on-demand, Spot, flex-start and
  reservations all offered), `SPOT_OR_FLEX_START` (on-demand is not offered: an on-demand
  pool is created and never gets a node), `RESERVATION` (normally obtainable only from a
  reservation; on-demand requests usually fail for lack of capacity).
- `gke_capacity_problem(machine, spot, flex_start, reservation) -> Optional[str]` and
  `gke_capacity_warning(...)`: the refusal / the warning for a pool's consumption option.

Node labels (GKE `node_config.labels`, the kubelet's `--node-labels`):

- `RESTRICTED_NODE_LABEL_DOMAINS = ("kubernetes.io", "k8s.io")` and
  `is_restricted_node_label(key) -> bool`: GKE refuses any such key with HTTP 400
  "Applying kubernetes label is not allowed"; the kubelet refuses them in `--node-labels`
  unless they are in its short allow-list, which we never need.

Karpenter (`karpenter.sh/v1` NodePool; the CRD's own rules, per release, are checked on
every rendered NodePool by tests/components/cel_rules.py and the CRD schema validators):

- `KARPENTER_GPU_FAMILIES`: `karpenter.k8s.aws/instance-gpu-name` value -> the EC2
  instance families that carry that GPU (e.g. `l4` -> g6, gr6; `h200` -> p5e, p5en).

Sources (read 2026-12-01)
-------------------------
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

# Every source the data below comes from; the docstring above lists them too.
SOURCES: dict[str, str] = {
    "gke_gpu_machines": "https://cloud.google.com/compute/docs/gpus (GPU machine types: A4, A3, A2, G2, G4, N1)",
    "accelerator_optimized": "https://cloud.google.com/compute/docs/accelerator-optimized-machines",
    "n1_gpus": "https://cloud.google.com/compute/docs/gpus#n1-gpus (T4/V100/P4/P100 attachable counts, vCPU limits)",
    "gke_gpus": "https://cloud.google.com/kubernetes-engine/docs/how-to/gpus (cloud.google.com/gke-accelerator)",
    "gke_node_labels": "https://cloud.google.com/kubernetes-engine/docs/how-to/update-existing-nodepools "
                       "(node labels; API 400 'Applying kubernetes label is not allowed')",
    "kubelet_node_labels": "https://kubernetes.io/docs/reference/command-line-tools-reference/kubelet/ "
                           "(--node-labels: kubernetes.io / k8s.io prefixes refused)",
    "gke_capacity": "https://cloud.google.com/kubernetes-engine/docs/concepts/gpus#gpu-consumption-options "
                    "and https://cloud.google.com/ai-hypercomputer/docs/consumption-models",
    "gke_flex_start": "https://cloud.google.com/kubernetes-engine/docs/how-to/dws-flex-start-inference",
    "gke_reservations": "https://cloud.google.com/kubernetes-engine/docs/how-to/consuming-reservations",
    "karpenter_aws_labels": "https://karpenter.sh/docs/reference/instance-types/ (instance-gpu-name, instance-gpu-memory)",
    "ec2_gpu_instances": "https://aws.amazon.com/ec2/instance-types/#Accelerated_Computing",
}
SOURCES_READ_ON = "2026-12-01"

__doc__ += "\n".join(f"- {key}: {url}" for key, url in SOURCES.items()) + "\n"


# --- node labels -------------------------------------------------------------------------

RESTRICTED_NODE_LABEL_DOMAINS = ("kubernetes.io", "k8s.io")


def label_domain(key: str) -> str:
    """The prefix of a label key (`app.kubernetes.io/name` -> `app.kubernetes.io`); a key
    without a prefix is its own domain, as the CRDs' `find("^([^/]+)")` reads it."""
    return key.split("/", 1)[0]


def _in_domain(domain: str, restricted: str) -> bool:
    return domain == restricted or domain.endswith("." + restricted)


def is_restricted_node_label(key: str) -> bool:
    """True for a key GKE refuses in `node_config.labels` (and the kubelet in --node-labels)."""
    if "/" not in key:
        return False
    return any(_in_domain(label_domain(key), d) for d in RESTRICTED_NODE_LABEL_DOMAINS)


# --- GKE machine types -------------------------------------------------------------------

ON_DEMAND = "on-demand"
SPOT_OR_FLEX_START = "spot-or-flex-start"
RESERVATION = "reservation"


# GKE accelerator type -> the value of `cloud.google.com/gke-accelerator` on its nodes
# (GKE labels a GPU node with the accelerator type's own name).
GKE_ACCELERATORS: dict[str, str] = {
    name: name
    for name in (
        "nvidia-tesla-t4", "nvidia-tesla-p4", "nvidia-tesla-p100", "nvidia-tesla-v100", "nvidia-l4",
        "nvidia-tesla-a100", "nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-h100-mega-80gb",
        "nvidia-h200-141gb", "nvidia-b200", "nvidia-rtx-pro-6000",
    )
}


def gke_accelerator_label(accelerator: str) -> str:
    """The `cloud.google.com/gke-accelerator` value of nodes with `accelerator`."""
    if accelerator not in GKE_ACCELERATORS:
        raise KeyError(f"unknown GKE accelerator '{accelerator}'; known: {', '.join(sorted(GKE_ACCELERATORS))}")
    return GKE_ACCELERATORS[accelerator]


@dataclass(frozen=True)
class N1Gpu:
    counts: tuple[int, ...]  # GPUs one n1 VM may attach
    max_vcpus: dict[int, int]  # per count: the most vCPUs the n1 VM may have


# GPUs attachable to N1 machine types, with the vCPU limit per count.
GKE_N1_GPUS: dict[str, N1Gpu] = {
    "nvidia-tesla-t4": N1Gpu((1, 2, 4), {1: 48, 2: 48, 4: 96}),
    "nvidia-tesla-p4": N1Gpu((1, 2, 4), {1: 24, 2: 48, 4: 96}),
    "nvidia-tesla-p100": N1Gpu((1, 2, 4), {1: 16, 2: 32, 4: 64}),
    "nvidia-tesla-v100": N1Gpu((1, 2, 4, 8), {1: 12, 2: 24, 4: 48, 8: 96}),
}


@dataclass(frozen=True)
class GkeMachine:
    machine_type: str
    accelerator: Optional[str] = None  # fixed GPU type; None: none of its own
    count: int = 0  # fixed GPUs per node
    capacity: str = ON_DEMAND
    # n1 only: accelerators it may attach, with the allowed counts.
    attachable: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _fixed(accelerator: str, counts: dict[str, int], capacity: str = ON_DEMAND) -> dict[str, GkeMachine]:
    return {name: GkeMachine(name, accelerator, n, capacity) for name, n in counts.items()}


GKE_FIXED_GPU_MACHINES: dict[str, GkeMachine] = {
    # G2: NVIDIA L4. g2-standard-32 has one L4 (more vCPUs, not more GPUs).
    **_fixed("nvidia-l4", {"g2-standard-4": 1, "g2-standard-8": 1, "g2-standard-12": 1, "g2-standard-16": 1,
                           "g2-standard-24": 2, "g2-standard-32": 1, "g2-standard-48": 4, "g2-standard-96": 8}),
    # A2 Standard: A100 40 GB.
    **_fixed("nvidia-tesla-a100", {"a2-highgpu-1g": 1, "a2-highgpu-2g": 2, "a2-highgpu-4g": 4,
                                   "a2-highgpu-8g": 8, "a2-megagpu-16g": 16}),
    # A2 Ultra: A100 80 GB.
    **_fixed("nvidia-a100-80gb", {"a2-ultragpu-1g": 1, "a2-ultragpu-2g": 2, "a2-ultragpu-4g": 4,
                                  "a2-ultragpu-8g": 8}),
    # A3 High: H100 80 GB; the 1/2/4-GPU shapes are sold as Spot or flex-start only.
    **_fixed("nvidia-h100-80gb", {"a3-highgpu-1g": 1, "a3-highgpu-2g": 2, "a3-highgpu-4g": 4},
             SPOT_OR_FLEX_START),
    **_fixed("nvidia-h100-80gb", {"a3-highgpu-8g": 8, "a3-edgegpu-8g": 8}),
    # A3 Mega (H100 Mega), A3 Ultra (H200), A4 (B200): normally from a reservation.
    **_fixed("nvidia-h100-mega-80gb", {"a3-megagpu-8g": 8}, RESERVATION),
    **_fixed("nvidia-h200-141gb", {"a3-ultragpu-8g": 8}, RESERVATION),
    **_fixed("nvidia-b200", {"a4-highgpu-8g": 8}, RESERVATION),
    # G4: RTX PRO 6000.
    **_fixed("nvidia-rtx-pro-6000", {"g4-standard-48": 1, "g4-standard-96": 2, "g4-standard-192": 4,
                                     "g4-standard-384": 8}),
}

# Families whose every machine type has GPUs built in: a name not in the table is a typo
# or a shape newer than this table, and is refused rather than guessed.
_FIXED_GPU_FAMILIES = ("a2-", "a3-", "a4-", "a4x-", "g2-", "g4-")
_N1 = re.compile(r"^n1-(standard|highmem|highcpu)-(\d+)$")


class UnknownMachineType(ValueError):
    """An accelerator-optimized machine type that is not in GKE_FIXED_GPU_MACHINES."""


class GkeMachineMismatch(ValueError):
    """The machine type cannot carry the GPUs the pods ask for."""


def gke_machine(machine_type: str) -> GkeMachine:
    if machine_type in GKE_FIXED_GPU_MACHINES:
        return GKE_FIXED_GPU_MACHINES[machine_type]
    if machine_type.startswith(_FIXED_GPU_FAMILIES):
        raise UnknownMachineType(
            f"'{machine_type}' is not a known GPU machine type; known: "
            + ", ".join(sorted(GKE_FIXED_GPU_MACHINES))
        )
    if _N1.match(machine_type):
        return GkeMachine(machine_type, attachable={a: g.counts for a, g in GKE_N1_GPUS.items()})
    return GkeMachine(machine_type)


def gke_machines_for(accelerator: str) -> list[str]:
    """Machine types that carry `accelerator`, fewest GPUs first."""
    fixed = sorted((m.count, name) for name, m in GKE_FIXED_GPU_MACHINES.items() if m.accelerator == accelerator)
    if fixed:
        return [name for _, name in fixed]
    if accelerator in GKE_N1_GPUS:
        return [f"n1-standard-N (N <= {GKE_N1_GPUS[accelerator].max_vcpus[1]} for one GPU)"]
    return []


def gke_accelerator_count(machine_type: str, accelerator: str, gpus_per_pod: int) -> int:
    """GPUs per node a pool of `machine_type` declares for pods of `gpus_per_pod` x `accelerator`."""
    machine = gke_machine(machine_type)
    fits = ", ".join(gke_machines_for(accelerator)) or "none known"
    if machine.accelerator is not None:
        if machine.accelerator != accelerator:
            raise GkeMachineMismatch(
                f"'{machine_type}' carries {machine.count} x {machine.accelerator}, not {accelerator}; "
                f"machine types with {accelerator}: {fits}"
            )
        if machine.count < gpus_per_pod:
            raise GkeMachineMismatch(
                f"'{machine_type}' carries {machine.count} x {accelerator}, fewer than the "
                f"{gpus_per_pod} each pod requests; machine types with {accelerator}: {fits}"
            )
        return machine.count
    if accelerator in machine.attachable:
        n1 = GKE_N1_GPUS[accelerator]
        count = next((c for c in n1.counts if c >= gpus_per_pod), None)
        if count is None:
            raise GkeMachineMismatch(
                f"an n1 machine attaches at most {max(n1.counts)} x {accelerator}, fewer than the "
                f"{gpus_per_pod} each pod requests"
            )
        vcpus = int(_N1.match(machine_type).group(2))
        if vcpus > n1.max_vcpus[count]:
            raise GkeMachineMismatch(
                f"'{machine_type}' has {vcpus} vCPUs; with {count} x {accelerator} an n1 machine "
                f"may have at most {n1.max_vcpus[count]}"
            )
        return count
    raise GkeMachineMismatch(
        f"'{machine_type}' has no {accelerator} (and cannot attach one); machine types with "
        f"{accelerator}: {fits}"
    )


def gke_capacity_problem(machine: GkeMachine, spot: bool, flex_start: bool, reservation: Optional[str]) -> Optional[str]:
    """Why a pool on `machine` with this consumption option would never get a node, or None."""
    if machine.capacity == SPOT_OR_FLEX_START and not (spot or flex_start):
        on_demand = [name for name in gke_machines_for(machine.accelerator)
                     if GKE_FIXED_GPU_MACHINES[name].capacity == ON_DEMAND]
        instead = f", or node_pool.machine_type: {' / '.join(on_demand)} (on-demand)" if on_demand else ""
        return (
            f"'{machine.machine_type}' is sold as Spot or flex-start only (no on-demand capacity): an "
            "on-demand pool would never get a node; set node_pool.spot: true or "
            f"node_pool.flex_start: true{instead}"
        )
    return None


def gke_capacity_warning(machine: GkeMachine, spot: bool, flex_start: bool, reservation: Optional[str]) -> Optional[str]:
    """Advice for a pool that may well get no node (normally reserved capacity), or None."""
    if machine.capacity == RESERVATION and not (spot or flex_start or reservation):
        return (
            f"'{machine.machine_type}' is normally obtainable only from a reservation; an on-demand "
            "pool consumes a matching reservation automatically if the project has one, and "
            "otherwise usually gets no node. Set node_pool.reservation: <name> (a specific "
            "reservation), node_pool.flex_start: true or node_pool.spot: true"
        )
    return None


# --- Karpenter ---------------------------------------------------------------------------

# karpenter.k8s.aws/instance-gpu-name -> EC2 instance families with that GPU.
KARPENTER_GPU_FAMILIES: dict[str, tuple[str, ...]] = {
    "t4": ("g4dn",),
    "a10g": ("g5",),
    "l4": ("g6", "gr6"),
    "l40s": ("g6e",),
    # p4d carries A100 40 GB, p4de A100 80 GB under the same name; instance-gpu-memory
    # (MiB per GPU: 40960 vs 81920) tells them apart.
    "a100": ("p4d", "p4de"),
    "h100": ("p5",),
    "h200": ("p5e", "p5en"),
    "v100": ("p3", "p3dn"),
}
