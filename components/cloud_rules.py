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

Karpenter (`karpenter.sh/v1` NodePool, every release from v1.0 to the newest):

- `karpenter_nodepool_problems(spec) -> list[str]`: every rule of the NodePool CRD (CEL
  rules, enums and patterns) that bears on what we render, checked over `spec`; empty when
  every Karpenter v1 release accepts it. The rules are the union of v1.0 (the strictest)
  and the newest release (which dropped the kubernetes.io / k8s.io domain rules).
- `karpenter_label_problem(key) -> Optional[str]`: one template label key or requirement
  key against the label-domain rules (the CRD applies the same rules to both).
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
    "karpenter_crd_v1_0": "https://github.com/aws/karpenter-provider-aws/blob/v1.0.0/pkg/apis/crds/karpenter.sh_nodepools.yaml",
    "karpenter_crd_newest": "https://github.com/aws/karpenter-provider-aws/blob/main/pkg/apis/crds/karpenter.sh_nodepools.yaml",
    "karpenter_relaxed_domains": "https://github.com/kubernetes-sigs/karpenter/pull/2586 "
                                 "(drops the kubernetes.io / k8s.io CEL rules after v1.8)",
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
CAPACITY_CLASSES = (ON_DEMAND, SPOT_OR_FLEX_START, RESERVATION)


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

# CRD rules, the union over releases v1.0 .. newest (see SOURCES). A key's domain that
# ends with one of these is refused unless the key is well-known or the domain ends with
# one of the exceptions.
KARPENTER_RESTRICTED_LABEL_DOMAINS = ("kubernetes.io", "k8s.io", "karpenter.sh", "karpenter.k8s.aws")
KARPENTER_LABEL_DOMAIN_EXCEPTIONS = ("node.kubernetes.io", "node-restriction.kubernetes.io", "kops.k8s.io")
_KUBERNETES_WELL_KNOWN = (
    "beta.kubernetes.io/instance-type", "failure-domain.beta.kubernetes.io/region", "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch", "failure-domain.beta.kubernetes.io/zone", "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region", "kubernetes.io/arch", "kubernetes.io/os", "node.kubernetes.io/windows-build",
)
KARPENTER_WELL_KNOWN_LABELS = _KUBERNETES_WELL_KNOWN + (
    "karpenter.sh/capacity-type",
    # karpenter.k8s.aws keys allowed by v1.0's list (the newest adds karpenter.k8s.aws/ec2nodeclass).
    "karpenter.k8s.aws/instance-encryption-in-transit-supported", "karpenter.k8s.aws/instance-category",
    "karpenter.k8s.aws/instance-hypervisor", "karpenter.k8s.aws/instance-family",
    "karpenter.k8s.aws/instance-generation", "karpenter.k8s.aws/instance-local-nvme",
    "karpenter.k8s.aws/instance-size", "karpenter.k8s.aws/instance-cpu",
    "karpenter.k8s.aws/instance-cpu-manufacturer", "karpenter.k8s.aws/instance-memory",
    "karpenter.k8s.aws/instance-ebs-bandwidth", "karpenter.k8s.aws/instance-network-bandwidth",
    "karpenter.k8s.aws/instance-gpu-name", "karpenter.k8s.aws/instance-gpu-manufacturer",
    "karpenter.k8s.aws/instance-gpu-count", "karpenter.k8s.aws/instance-gpu-memory",
    "karpenter.k8s.aws/instance-accelerator-name", "karpenter.k8s.aws/instance-accelerator-manufacturer",
    "karpenter.k8s.aws/instance-accelerator-count",
)
# Refused outright (the controller sets them).
KARPENTER_FORBIDDEN_LABELS = ("karpenter.sh/nodepool", "kubernetes.io/hostname")
KARPENTER_REQUIREMENT_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
KARPENTER_CONSOLIDATION_POLICIES = ("WhenEmpty", "WhenEmptyOrUnderutilized")
KARPENTER_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(\/))?([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DURATION_OR_NEVER = re.compile(r"^(([0-9]+(s|m|h))+)|(Never)$")
_BUDGET_NODES = re.compile(r"^((100|[0-9]{1,2})%|[0-9]+)$")
_BUDGET_DURATION = re.compile(r"^((([0-9]+(h|m))|([0-9]+h[0-9]+m))(0s)?)$")
_QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def karpenter_label_problem(key: str) -> Optional[str]:
    """Why a template label key or requirement key is refused by some Karpenter v1 release."""
    if len(key) > 316 or not _LABEL_KEY.match(key):
        return f"'{key}' is not a label key"
    if key in KARPENTER_FORBIDDEN_LABELS:
        return f'label "{key}" is restricted'
    if key in KARPENTER_WELL_KNOWN_LABELS:
        return None
    domain = label_domain(key)
    # CEL `endsWith` is a plain suffix test; mirror it exactly.
    if any(domain.endswith(exception) for exception in KARPENTER_LABEL_DOMAIN_EXCEPTIONS):
        return None
    for restricted in KARPENTER_RESTRICTED_LABEL_DOMAINS:
        if domain.endswith(restricted):
            return f'label domain "{restricted}" is restricted ({key})'
    return None


def karpenter_nodepool_problems(spec: dict) -> list[str]:
    """The NodePool CRD rules (v1.0 .. newest) that `spec` breaks; [] when all accept it."""
    problems: list[str] = []
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    for key, value in labels.items():
        if problem := karpenter_label_problem(key):
            problems.append(f"spec.template.metadata.labels: {problem}")
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            problems.append(f"spec.template.metadata.labels[{key}]: '{value}' is not a label value")
    node_spec = template.get("spec") or {}
    ref = node_spec.get("nodeClassRef") or {}
    for part in ("group", "kind", "name"):
        if not ref.get(part):
            problems.append(f"spec.template.spec.nodeClassRef.{part}: required and not empty")
    if "/" in ref.get("group", ""):
        problems.append("spec.template.spec.nodeClassRef.group: a group, not a group/version")
    requirements = node_spec.get("requirements")
    if not requirements:
        problems.append("spec.template.spec.requirements: required")
    for i, req in enumerate(requirements or []):
        where = f"spec.template.spec.requirements[{i}]"
        if problem := karpenter_label_problem(req.get("key", "")):
            problems.append(f"{where}.key: {problem}")
        operator, values = req.get("operator"), req.get("values") or []
        if operator not in KARPENTER_REQUIREMENT_OPERATORS:
            problems.append(f"{where}.operator: {operator!r} is not one of {KARPENTER_REQUIREMENT_OPERATORS}")
        if operator == "In" and not values:
            problems.append(f"{where}: operator 'In' must have a value defined")
        if operator in ("Gt", "Lt") and not (len(values) == 1 and re.fullmatch(r"[0-9]+", str(values[0]))):
            problems.append(f"{where}: operator {operator} must have a single positive integer value")
        if operator in ("Exists", "DoesNotExist") and values:
            problems.append(f"{where}: operator {operator} takes no values")
        for value in values:
            if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
                problems.append(f"{where}.values: {value!r} is not a label value (a string)")
        if "minValues" in req and (operator != "In" or len(values) < req["minValues"]):
            problems.append(f"{where}.minValues: needs operator In and at least that many values")
    for i, taint in enumerate(node_spec.get("taints") or []):
        if taint.get("effect") not in KARPENTER_TAINT_EFFECTS:
            problems.append(f"spec.template.spec.taints[{i}].effect: {taint.get('effect')!r}")
        if not taint.get("key") or not _LABEL_KEY.match(taint["key"]):
            problems.append(f"spec.template.spec.taints[{i}].key: {taint.get('key')!r}")
    expire = node_spec.get("expireAfter")
    if expire is not None and not _DURATION_OR_NEVER.match(expire):
        problems.append(f"spec.template.spec.expireAfter: {expire!r}")
    disruption = spec.get("disruption")
    if disruption is not None:
        # v1.0 .. newest: consolidateAfter is required; the policy enum has no WhenUnderutilized.
        if "consolidateAfter" not in disruption:
            problems.append("spec.disruption.consolidateAfter: required")
        elif not _DURATION_OR_NEVER.match(disruption["consolidateAfter"]):
            problems.append(f"spec.disruption.consolidateAfter: {disruption['consolidateAfter']!r}")
        policy = disruption.get("consolidationPolicy")
        if policy is not None and policy not in KARPENTER_CONSOLIDATION_POLICIES:
            problems.append(f"spec.disruption.consolidationPolicy: {policy!r} is not one of "
                            f"{KARPENTER_CONSOLIDATION_POLICIES}")
        if "expireAfter" in disruption:
            problems.append("spec.disruption.expireAfter: moved to spec.template.spec.expireAfter in v1")
        budgets = disruption.get("budgets") or []
        if len(budgets) > 50:
            problems.append("spec.disruption.budgets: at most 50")
        for i, budget in enumerate(budgets):
            if not isinstance(budget.get("nodes"), str) or not _BUDGET_NODES.match(budget["nodes"]):
                problems.append(f"spec.disruption.budgets[{i}].nodes: {budget.get('nodes')!r} is not "
                                "a count or a percentage (a string)")
            if ("schedule" in budget) != ("duration" in budget):
                problems.append(f"spec.disruption.budgets[{i}]: 'schedule' must be set with 'duration'")
            if "duration" in budget and not _BUDGET_DURATION.match(budget["duration"]):
                problems.append(f"spec.disruption.budgets[{i}].duration: {budget['duration']!r}")
    for resource, quantity in (spec.get("limits") or {}).items():
        if not _QUANTITY.match(str(quantity)):
            problems.append(f"spec.limits.{resource}: {quantity!r} is not a quantity")
    weight = spec.get("weight")
    if weight is not None and not (isinstance(weight, int) and 1 <= weight <= 100):
        problems.append(f"spec.weight: {weight!r} is not 1..100")
    return problems
