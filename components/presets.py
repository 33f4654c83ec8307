"""GPU presets: what one replica gets, and the node labels each node-pool mode selects on.

A preset is the per-replica shape: GPU count, CPU and memory (requests = limits), and for
each way of getting nodes the label value that identifies the GPU:

- `existing`: GPU Feature Discovery's `nvidia.com/gpu.product` (e.g. `NVIDIA-L4`);
- `karpenter`: the AWS provider's `karpenter.k8s.aws/instance-gpu-name` (e.g. `l4`);
- `gke`: `cloud.google.com/gke-accelerator` (e.g. `nvidia-l4`) plus the machine type
  the GKE node pool is created with.

CPU and memory are sized to fit the allocatable capacity of the smallest usual instance
for that GPU (e.g. g6.2xlarge / g2-standard-8 for an L4), not the whole machine.
Custom presets are the same model, under the app config's top-level `presets:` map;
a custom preset with a built-in name replaces the built-in one.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .config.base import QUANTITY

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
KARPENTER_GPU_NAME_LABEL = "karpenter.k8s.aws/instance-gpu-name"
KARPENTER_GPU_MEMORY_LABEL = "karpenter.k8s.aws/instance-gpu-memory"
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"


class Preset(BaseModel):
    """A custom per-replica shape and the node labels that identify its GPU in each node-pool mode."""

    # Its own config (not config.ConfigModel's): numbers stay numbers here (`cpu: 4` is refused).
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, title="CustomPreset")

    description: str = ""
    """Free text."""
    gpu_count: Annotated[int, Field(ge=0, le=16)] = 0
    """`nvidia.com/gpu` per replica."""
    cpu: Annotated[str, Field(pattern=QUANTITY)]
    """CPU, a Kubernetes quantity; requests = limits."""
    memory: Annotated[str, Field(pattern=QUANTITY)]
    """Memory, a Kubernetes quantity; requests = limits."""
    # Node label values per node-pool mode (None: that mode cannot place this preset).
    gpu_product: Optional[str] = None
    """`existing`: the value of `nvidia.com/gpu.product` (GPU Feature Discovery)."""
    karpenter_gpu_name: Optional[str] = None
    """`karpenter`: the value of `karpenter.k8s.aws/instance-gpu-name`."""
    karpenter_min_gpu_memory_mib: Optional[int] = None
    """`karpenter`: the NodePool also requires `karpenter.k8s.aws/instance-gpu-memory` greater than this."""
    gke_accelerator: Optional[str] = None
    """`gke`: the value of `cloud.google.com/gke-accelerator` (the GKE accelerator type)."""
    # GPUs per node follow from the machine type (cloud_rules.GKE_FIXED_GPU_MACHINES, or n1
    # + attached T4/V100/P4/P100); validation refuses a type without the accelerator.
    gke_machine_type: str = "e2-standard-4"
    """`gke`: machine type. It must carry `gke_accelerator`, at least `gpu_count` per node (see "GKE machine types and capacity")."""

    @model_validator(mode="after")
    def _gpu_labels(self) -> "Preset":
        if self.gpu_count == 0 and (self.gpu_product or self.karpenter_gpu_name or self.gke_accelerator):
            raise ValueError("a preset with gpu_count 0 cannot name a GPU label")
        if self.gpu_count and not (self.gpu_product or self.karpenter_gpu_name or self.gke_accelerator):
            raise ValueError(
                "a GPU preset needs at least one of gpu_product, karpenter_gpu_name, gke_accelerator"
            )
        return self

    @property
    def cpu_cores(self) -> Decimal:
        return parse_cpu(self.cpu)


def parse_cpu(quantity: str) -> Decimal:
    """'500m' -> 0.5, '4' -> 4."""
    if quantity.endswith("m"):
        return Decimal(quantity[:-1]) / 1000
    return Decimal(quantity)


def _gpu(description: str, cpu: str, memory: str, product: str, karpenter: str, gke: Optional[str],
         machine: str = "e2-standard-4", min_gpu_memory: Optional[int] = None) -> Preset:
    return Preset(
        description=description,
        gpu_count=1,
        cpu=cpu,
        memory=memory,
        gpu_product=product,
        karpenter_gpu_name=karpenter,
        karpenter_min_gpu_memory_mib=min_gpu_memory,
        gke_accelerator=gke,
        gke_machine_type=machine,
    )


BUILTIN_PRESETS: dict[str, Preset] = {
    "cpu-small": Preset(
        description="No GPU: CPU inference for builtin/turbo models and smoke tests",
        cpu="2", memory="8Gi", gke_machine_type="e2-standard-4",
    ),
    "gpu-t4-x1": _gpu("1x NVIDIA T4 16 GB (g4dn.xlarge, n1-standard-8)", "3", "12Gi",
                      "Tesla-T4", "t4", "nvidia-tesla-t4", "n1-standard-8"),
    "gpu-l4-x1": _gpu("1x NVIDIA L4 24 GB (g6.2xlarge, g2-standard-8)", "6", "24Gi",
                      "NVIDIA-L4", "l4", "nvidia-l4", "g2-standard-8"),
    "gpu-a10g-x1": _gpu("1x NVIDIA A10G 24 GB (g5.2xlarge; AWS only)", "6", "24Gi",
                        "NVIDIA-A10G", "a10g", None),
    "gpu-l40s-x1": _gpu("1x NVIDIA L40S 48 GB (g6e.2xlarge; AWS only)", "6", "48Gi",
                        "NVIDIA-L40S", "l40s", None),
    "gpu-a100-x1": _gpu("1x NVIDIA A100 80 GB (p4de, a2-ultragpu-1g)", "10", "96Gi",
                        "NVIDIA-A100-SXM4-80GB", "a100", "nvidia-a100-80gb", "a2-ultragpu-1g",
                        min_gpu_memory=40960),
    # a3-highgpu-1g is sold as Spot or flex-start only: with mode gke, set node_pool.spot or
    # node_pool.flex_start (or machine_type a3-highgpu-8g, 8 replicas per node).
    "gpu-h100-x1": _gpu("1x NVIDIA H100 80 GB (p5.4xlarge, a3-highgpu-1g Spot/flex-start)", "12", "120Gi",
                        "NVIDIA-H100-80GB-HBM3", "h100", "nvidia-h100-80gb", "a3-highgpu-1g"),
    "gpu-h200-x1": _gpu("1x NVIDIA H200 141 GB (p5en, a3-ultragpu-8g shared by 8 replicas)", "20", "200Gi",
                        "NVIDIA-H200", "h200", "nvidia-h200-141gb", "a3-ultragpu-8g"),
}
