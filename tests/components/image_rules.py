"""Image references a remote cluster can pull.

A node pool the cluster creates (Karpenter, GKE) is a remote machine: it pulls every image
from a registry. A reference without a registry host (`stable-diffusion-inference:v1`)
means Docker Hub's `docker.io/library/...`, which does not hold our images, so the pod
stays in ErrImagePull. The host is the first path component when it contains a `.` or a
`:` or is `localhost` (the rule of the container runtimes' reference parser,
distribution/reference `splitDockerDomain`), which the component applies to the config
(`components.config.registry_host`); here it is applied to what was rendered.
"""

from __future__ import annotations

from components.config import registry_host

REMOTE_POOL_MODES = {"karpenter", "gke"}


def pool_mode(config: dict) -> str:
    pool = config.get("node_pool", "existing")
    return pool if isinstance(pool, str) else pool.get("mode", "existing")


def container_images(objects: list[dict]) -> list[tuple[str, str]]:
    """(where, image) of every container and init container of every pod template."""
    found = []
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for group in ("initContainers", "containers"):
            for c in pod.get(group, []):
                found.append((f"{obj['kind']}/{obj['metadata']['name']} {group}[{c['name']}]", c["image"]))
    return found


def unpullable_images(config: dict, objects: list[dict]) -> list[str]:
    """Images without a registry host, for a config whose pods run on a remote pool."""
    if pool_mode(config) not in REMOTE_POOL_MODES:
        return []
    return [f"{where}: {image!r} names no registry host; a {pool_mode(config)} node cannot pull it"
            for where, image in container_images(objects) if registry_host(image) is None]
