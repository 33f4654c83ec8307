"""Pod building blocks that both Deployments use (the API's in workload.py, StableStudio's in
stablestudio.py), so the two pods are restricted the same way.

Restricted Pod Security: non-root uid/gid 10001, read-only root filesystem (a writable
`/tmp` emptyDir), no privilege escalation, all capabilities dropped, RuntimeDefault
seccomp; no service-account token and no service-link variables. Resources are requests =
limits (Guaranteed QoS). Probes are HTTP GETs on the named container port.
"""

from __future__ import annotations

from typing import Optional

from .meta import PORT_NAME, UID, Names

def tmp_mount() -> dict:
    return {"name": "tmp", "mountPath": "/tmp"}


def container_security_context() -> dict:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def guaranteed(amounts: dict[str, str]) -> dict:
    """requests = limits: Guaranteed QoS, no noisy neighbours on a shared node."""
    return {"requests": dict(amounts), "limits": dict(amounts)}


def http_probe(path: str, period: int, failures: int, timeout: int) -> dict:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def tmp_volume(size: str) -> dict:
    return {"name": "tmp", "emptyDir": {"sizeLimit": size}}


def pod_spec(names: Names, containers: list[dict], volumes: list[dict], pull_secret: Optional[str],
             **fields) -> dict:
    """A pod spec with the shared basics; `fields` adds the pod's own (init containers, ...)."""
    spec = {
        "serviceAccountName": names.service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "containers": containers,
        "volumes": volumes,
        **fields,
    }
    if pull_secret:
        spec["imagePullSecrets"] = [{"name": pull_secret}]
    return spec
