"""Names and labels shared by every object the component declares.

Kubernetes names are explicit (not Pulumi auto-names) wherever another object or a
client refers to them: the Service's DNS name is the `internal_api` output, the
Deployment mounts Secrets by name, the KEDA ScaledObject targets the Deployment by name.
"""

from __future__ import annotations

from dataclasses import dataclass

PORT = 8000
PORT_NAME = "http"
UID = 10001
CACHE_MOUNT = "/models"
AUTH_DIR = "/etc/stable-diffusion/auth"
AUTH_FILE = f"{AUTH_DIR}/htpasswd"
PEER_TOKEN_FILE = f"{AUTH_DIR}/peer-token"
HF_TOKEN_DIR = "/etc/stable-diffusion/hf"


@dataclass(frozen=True)
class Names:
    """Every Kubernetes name, derived from the component's name and the namespace."""

    base: str
    namespace: str

    @property
    def service(self) -> str:
        return self.base

    @property
    def deployment(self) -> str:
        return self.base

    @property
    def service_account(self) -> str:
        return self.base

    @property
    def hf_token_secret(self) -> str:
        return f"{self.base}-hf-token"

    @property
    def auth_secret(self) -> str:
        return f"{self.base}-htpasswd"

    @property
    def cache_claim(self) -> str:
        return f"{self.base}-model-cache"

    @property
    def tls_secret(self) -> str:
        return f"{self.base}-tls"

    @property
    def node_pool(self) -> str:
        """Cluster-scoped (Karpenter) or cloud (GKE) name: unique per namespace."""
        name = self.base if self.base == self.namespace else f"{self.namespace}-{self.base}"
        return name[:40].rstrip("-")

    @property
    def stablestudio(self) -> str:
        """StableStudio's Deployment and Service."""
        return f"{self.base}-stablestudio"

    @property
    def internal_host(self) -> str:
        return f"{self.service}.{self.namespace}.svc.cluster.local"

    @property
    def peers_service(self) -> str:
        """The headless Service whose DNS name resolves to every API replica's IP."""
        return f"{self.base}-peers"

    @property
    def peers_host(self) -> str:
        # `<svc>.<ns>.svc`: the pod's DNS search list completes it with whatever the
        # cluster domain is (not every cluster's is cluster.local).
        return f"{self.peers_service}.{self.namespace}.svc"

    def selector_labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "stable-diffusion",
            "app.kubernetes.io/instance": self.base,
        }

    def stablestudio_selector_labels(self) -> dict[str, str]:
        """StableStudio's pods: a different `name`, so no API selector ever matches them."""
        return {
            "app.kubernetes.io/name": "stablestudio",
            "app.kubernetes.io/instance": self.base,
        }

    def labels(self, component: str = "inference") -> dict[str, str]:
        selector = self.stablestudio_selector_labels() if component == "stablestudio" else self.selector_labels()
        return {
            **selector,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "stable-diffusion",
            "app.kubernetes.io/managed-by": "pulumi",
        }

    def metadata(self, name: str, component: str = "inference", **extra) -> dict:
        return {"name": name, "namespace": self.namespace, "labels": self.labels(component), **extra}
