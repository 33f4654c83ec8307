"""`node_pool`: how GPU nodes are found (`existing`) or made (`karpenter`, `gke`)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, model_validator

from .base import DNS_LABEL, DNS_SUBDOMAIN, KARPENTER_DURATION, ConfigModel, SchemaType


class ExistingNodes(ConfigModel):
    """Nodes that are already there, selected by the preset's GPU label."""

    mode: Literal["existing"] = "existing"
    """`existing`, `karpenter` or `gke`."""
    node_selector: Optional[dict[str, str]] = None
    """Overrides the preset's selector (e.g. a cluster without GPU Feature Discovery)."""


class KarpenterNodePool(ConfigModel):
    """A `karpenter.sh/v1` NodePool."""

    mode: Literal["karpenter"]
    """`karpenter`."""
    node_class: Annotated[str, Field(pattern=DNS_SUBDOMAIN)] = "default"
    """Node class name."""
    node_class_kind: str = "EC2NodeClass"
    """Node class kind."""
    node_class_group: str = "karpenter.k8s.aws"
    """Node class API group."""
    capacity_types: list[Literal["on-demand", "spot", "reserved"]] = ["on-demand"]
    """Capacity types the pool may launch."""
    consolidate_after: Annotated[str, Field(pattern=KARPENTER_DURATION)] = "10m"
    """How long an empty node stays before it is removed."""
    expire_after: Annotated[str, Field(pattern=KARPENTER_DURATION)] = "720h"
    """Node lifetime before it is replaced."""


class GkeNodePool(ConfigModel):
    """A `gcp.container.NodePool` in an existing GKE cluster."""

    mode: Literal["gke"]
    """`gke`."""
    cluster: Annotated[str, Field(min_length=1)]
    """Cluster name."""
    location: Annotated[str, Field(min_length=1)]
    """Region or zone."""
    project: Optional[str] = None
    """Project. Default: the provider's."""
    machine_type: Optional[str] = None
    """Machine type; it must carry the preset's `gke_accelerator`. Default: the preset's `gke_machine_type`."""
    spot: bool = False
    """Spot VMs."""
    min_node_count: Annotated[int, Field(ge=0)] = 0
    """Nodes per zone, at least."""
    max_node_count: Optional[Annotated[int, Field(ge=1)]] = None
    """Nodes per zone, at most. Default: enough for max replicas + 1."""
    disk_size_gb: Annotated[int, Field(ge=50)] = 200
    """Boot disk size."""
    gpu_driver_version: Literal["DEFAULT", "LATEST", "INSTALLATION_DISABLED"] = "LATEST"
    """GPU driver GKE installs."""
    flex_start: bool = False
    """Flex-start (Dynamic Workload Scheduler) VMs: GPUs that on-demand cannot get; each node runs at most 7 days, then is replaced."""
    reservation: Optional[Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]] = None
    """A specific Compute Engine reservation to take the nodes from (by name). Without it an on-demand pool consumes any matching reservation automatically."""

    @model_validator(mode="after")
    def _one_consumption_option(self) -> "GkeNodePool":
        chosen = [name for name, on in (("spot", self.spot), ("flex_start", self.flex_start),
                                        ("reservation", self.reservation is not None)) if on]
        if len(chosen) > 1:
            raise ValueError(
                f"{' and '.join(chosen)} exclude each other (Spot and flex-start VMs cannot "
                "consume reservations, and a node is either Spot or flex-start); choose one"
            )
        return self


NodePool = Annotated[
    Union[ExistingNodes, KarpenterNodePool, GkeNodePool],
    Field(discriminator="mode"),
    SchemaType("NodePool", "How GPU nodes are found or made: `mode` `existing` (default), `karpenter` or `gke`, "
                           "and that mode's fields.", tag_prefix=True),
]
