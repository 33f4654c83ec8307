"""The rules a real cluster applies to our custom objects beyond their OpenAPI schema.

The compiled validators of tests/crds check each CRD's OpenAPI schema; the CRDs' CEL rules
(`x-kubernetes-validations`) and the operators' own admission checks are not in them, so
the ones that bear on what the component renders are written here, each citing where it
comes from. `violations(obj)` returns readable messages, empty when the object passes
under every covered release.

Karpenter (`karpenter.sh/v1` NodePool). Two rule sets, because a release relaxed them:
- V1_0: kubernetes-sigs/karpenter v1.0.x to v1.8.x, pkg/apis/crds/karpenter.sh_nodepools.yaml,
  as shipped by aws/karpenter-provider-aws charts/karpenter-crd/templates/karpenter.sh_nodepools.yaml
  (which adds the `karpenter.k8s.aws` domain rule).
- NEWEST: from kubernetes-sigs/karpenter#2586 (merged 2025-10, in v1.9.0 and later, newest
  v1.12), which dropped the `kubernetes.io` / `k8s.io` label-domain rules; the others are kept.
A config must pass both: the component supports every Karpenter v1 release.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# --- Karpenter --------------------------------------------------------------------------

# Exact keys the `kubernetes.io` domain rule allows on spec.template.metadata.labels
# (v1.0 CRD; requirement keys additionally allow node.kubernetes.io/instance-type).
_K8S_IO_ALLOWED_LABELS = frozenset({
    "beta.kubernetes.io/instance-type", "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/os", "beta.kubernetes.io/arch", "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/zone", "topology.kubernetes.io/region", "kubernetes.io/arch",
    "kubernetes.io/os", "node.kubernetes.io/windows-build",
})
_K8S_IO_ALLOWED_REQUIREMENTS = _K8S_IO_ALLOWED_LABELS | {"node.kubernetes.io/instance-type"}
# karpenter-provider-aws: the well-known `karpenter.k8s.aws/*` keys (v1.0 list).
_AWS_ALLOWED = frozenset(f"karpenter.k8s.aws/{name}" for name in (
    "instance-encryption-in-transit-supported", "instance-category", "instance-hypervisor",
    "instance-family", "instance-generation", "instance-local-nvme", "instance-size",
    "instance-cpu", "instance-cpu-manufacturer", "instance-memory", "instance-ebs-bandwidth",
    "instance-network-bandwidth", "instance-gpu-name", "instance-gpu-manufacturer",
    "instance-gpu-count", "instance-gpu-memory", "instance-accelerator-name",
    "instance-accelerator-manufacturer", "instance-accelerator-count",
))
# Budget and duration patterns (same in both releases; also in the OpenAPI schema, kept
# here so that the rules stand on their own in a unit test).
_BUDGET_NODES = re.compile(r"^((100|[0-9]{1,2})%|[0-9]+)$")
_DURATION = re.compile(r"^(([0-9]+(s|m|h))+)|(Never)$")


def _domain(key: str) -> str:
    """CEL `x.find("^([^/]+)")`: the part before the first slash (the whole key if none)."""
    return key.split("/", 1)[0]


@dataclass(frozen=True)
class KarpenterRelease:
    name: str
    restricts_kubernetes_io: bool  # the `kubernetes.io` and `k8s.io` domain rules

    def label_key_problems(self, key: str, requirement: bool) -> list[str]:
        domain = _domain(key)
        problems = []
        if self.restricts_kubernetes_io:
            allowed = _K8S_IO_ALLOWED_REQUIREMENTS if requirement else _K8S_IO_ALLOWED_LABELS
            if (domain.endswith("kubernetes.io") and key not in allowed
                    and not domain.endswith("node.kubernetes.io")
                    and not domain.endswith("node-restriction.kubernetes.io")):
                problems.append('label domain "kubernetes.io" is restricted')
            if domain.endswith("k8s.io") and not domain.endswith("kops.k8s.io"):
                problems.append('label domain "k8s.io" is restricted')
        if domain.endswith("karpenter.sh") and key not in {"karpenter.sh/capacity-type", "karpenter.sh/nodepool"}:
            problems.append('label domain "karpenter.sh" is restricted')
        if not requirement and key == "karpenter.sh/nodepool":
            problems.append('label "karpenter.sh/nodepool" is restricted')
        if key == "kubernetes.io/hostname":
            problems.append('label "kubernetes.io/hostname" is restricted')
        if domain.endswith("karpenter.k8s.aws") and key not in _AWS_ALLOWED:
            problems.append('label domain "karpenter.k8s.aws" is restricted')
        return problems


KARPENTER_V1_0 = KarpenterRelease("Karpenter v1.0-v1.8", restricts_kubernetes_io=True)
KARPENTER_NEWEST = KarpenterRelease("Karpenter v1.9+ (newest v1.12)", restricts_kubernetes_io=False)
KARPENTER_RELEASES = (KARPENTER_V1_0, KARPENTER_NEWEST)


def label_key_problems(key: str, requirement: bool = False) -> list[str]:
    """Why some supported Karpenter release refuses a template label key (or requirement key)."""
    return [f"{release.name}: {problem}" for release in KARPENTER_RELEASES
            for problem in release.label_key_problems(key, requirement)]


def _requirement_problems(req: dict) -> list[str]:
    """The requirement-list CEL rules (both releases), and the `values` field contract."""
    operator, values = req.get("operator"), req.get("values") or []
    problems = []
    if operator == "In" and not values:
        problems.append("requirements with operator 'In' must have a value defined")
    if operator in ("Gt", "Lt") and not (len(values) == 1 and re.fullmatch(r"\d+", values[0])):
        problems.append("requirements operator 'Gt' or 'Lt' must have a single positive integer value")
    if operator == "In" and "minValues" in req and len(values) < req["minValues"]:
        problems.append("requirements with 'minValues' must have at least that many values "
                        "specified in the 'values' field")
    # The field's documented contract (Go validation, not CEL): no values for these.
    if operator in ("Exists", "DoesNotExist") and values:
        problems.append(f"requirements operator '{operator}' must have no values")
    return problems


def nodepool_violations(obj: dict) -> list[str]:
    spec = obj.get("spec", {})
    template = spec.get("template", {})
    found = []
    for release in KARPENTER_RELEASES:
        for key in template.get("metadata", {}).get("labels", {}):
            found += [f"{release.name}: spec.template.metadata.labels[{key!r}]: {p}"
                      for p in release.label_key_problems(key, requirement=False)]
        for i, req in enumerate(template.get("spec", {}).get("requirements", [])):
            found += [f"{release.name}: spec.template.spec.requirements[{i}].key {req['key']!r}: {p}"
                      for p in release.label_key_problems(req["key"], requirement=True)]
    for i, req in enumerate(template.get("spec", {}).get("requirements", [])):
        found += [f"spec.template.spec.requirements[{i}]: {p}" for p in _requirement_problems(req)]
    disruption = spec.get("disruption", {})
    # v1 schema: consolidateAfter is required (so WhenEmpty always has one) and a duration.
    if not _DURATION.fullmatch(str(disruption.get("consolidateAfter", ""))):
        found.append("spec.disruption.consolidateAfter: required, a duration like 30s/5m or Never")
    policy = disruption.get("consolidationPolicy", "WhenEmptyOrUnderutilized")
    if policy not in ("WhenEmpty", "WhenEmptyOrUnderutilized"):  # v1 dropped WhenUnderutilized
        found.append(f"spec.disruption.consolidationPolicy: {policy!r} is not WhenEmpty or WhenEmptyOrUnderutilized")
    for i, budget in enumerate(disruption.get("budgets", [])):
        nodes = budget.get("nodes")
        if not isinstance(nodes, str) or not _BUDGET_NODES.fullmatch(nodes):
            found.append(f"spec.disruption.budgets[{i}].nodes: must be a count or a percentage")
        if ("schedule" in budget) != ("duration" in budget):
            found.append(f"spec.disruption.budgets[{i}]: 'schedule' must be set with 'duration'")
    expire = template.get("spec", {}).get("expireAfter")
    if expire is not None and not _DURATION.fullmatch(str(expire)):
        found.append("spec.template.spec.expireAfter: must be a duration or Never")
    for i, taint in enumerate(template.get("spec", {}).get("taints", [])):
        if taint.get("effect") not in ("NoSchedule", "PreferNoSchedule", "NoExecute") or not taint.get("key"):
            found.append(f"spec.template.spec.taints[{i}]: needs a key and a valid effect")
    for resource, amount in spec.get("limits", {}).items():
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?([KMGTPE]i|[numkMGTPE])?", str(amount)):
            found.append(f"spec.limits[{resource!r}]: {amount!r} is not a quantity")
    return found


# --- KEDA -------------------------------------------------------------------------------
# KEDA's ScaledObject CRD carries no CEL rules; its admission webhook runs
# CheckReplicaCountBoundsAreValid (kedacore/keda apis/keda/v1alpha1/scaledobject_types.go).


def scaledobject_violations(obj: dict) -> list[str]:
    spec = obj.get("spec", {})
    low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    found = []
    if low > high:
        found.append(f"spec: MinReplicaCount={low} must be less than MaxReplicaCount={high}")
    if "idleReplicaCount" in spec and spec["idleReplicaCount"] >= low:
        found.append("spec.idleReplicaCount: must be less than minReplicaCount")
    return found


RULES = {
    ("karpenter.sh/v1", "NodePool"): nodepool_violations,
    ("keda.sh/v1alpha1", "ScaledObject"): scaledobject_violations,
}


def violations(obj: dict) -> list[str]:
    """Rule violations of a custom object; kinds without extra rules have none."""
    check = RULES.get((obj["apiVersion"], obj["kind"]))
    return check(obj) if check else []
