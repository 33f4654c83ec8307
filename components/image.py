"""The inference image: a prebuilt reference, or `inference/` built with pulumi-docker-build.

Built images are pushed to `image.build.registry` and the Deployment uses the pushed
digest (the Image's `ref` output, `repo:tag@sha256:...`), so a rebuild with new content
rolls the pods and an unchanged one does not. With `image.build.local_cluster` instead,
the image is only loaded into this machine's Docker daemon and referenced by tag, pulled
`IfNotPresent`: Docker Desktop and Rancher Desktop (dockerd engine) run it from that
daemon; kind, k3d and minikube keep their own image stores, so the component warns with
the command that copies it there (docs/component.md, "Local clusters"). A config that
gives the nodes no pullable image is refused by config/ (images.py, app.py) before anything is declared.

The build context is the repository root (the Dockerfile copies requirements/ and
inference/). It is given relative to the program's working directory, so the same
stack state reads the same on every machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pulumi
import pulumi_docker_build as docker_build

from .config import AppConfig, BuiltImage, ImageBuild, PrebuiltImage
from .meta import Names

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "inference/Dockerfile"


# How an image loaded into this machine's Docker daemon reaches each local cluster's nodes;
# None where the cluster runs containers from that daemon itself.
LOAD_COMMANDS: dict[str, Optional[str]] = {
    "kind": "kind load docker-image {tag} [--name CLUSTER]",
    "k3d": "k3d image import {tag} [--cluster CLUSTER]",
    "minikube": "minikube image load {tag} [--profile PROFILE] (or run `pulumi up` after "
                "`eval $(minikube docker-env)`, which builds straight into minikube's daemon)",
    "docker-desktop": None,
    "rancher-desktop": None,
}


def load_hint(build: ImageBuild) -> Optional[str]:
    """The warning that tells how a locally built image gets into the local cluster."""
    command = LOAD_COMMANDS.get(build.local_cluster or "")
    if command is None:
        return None
    tag = f"{build.repository}:{build.tag}"
    return (
        f"image.build.local_cluster is {build.local_cluster}: the image {tag} is built into this "
        f"machine's Docker daemon, which the cluster's nodes do not read. Copy it into the cluster "
        f"after each build: {command.format(tag=tag)}. Until then the pods wait in ImagePullBackOff "
        "and start on their next retry."
    )


@dataclass(frozen=True)
class ImageRef:
    reference: pulumi.Input[str]
    pull_policy: str
    pull_secret: Optional[str]
    resource: Optional[pulumi.Resource] = None


def _context() -> str:
    relative = os.path.relpath(REPO_ROOT, Path.cwd())
    return relative.replace(os.sep, "/")


def image(
    app: AppConfig,
    names: Names,
    opts: pulumi.ResourceOptions,
    registry_password: Optional[pulumi.Output[str]] = None,
) -> ImageRef:
    spec = app.image
    if isinstance(spec, PrebuiltImage):
        return ImageRef(spec.reference, spec.pull_policy, spec.pull_secret)
    assert isinstance(spec, BuiltImage)
    build = spec.build
    tag = f"{build.repository}:{build.tag}"
    context = _context()
    push = build.registry is not None
    registries = None
    if push and build.username is not None:
        registries = [
            docker_build.RegistryArgs(
                address=build.registry.split("/")[0],
                username=build.username,
                password=registry_password,
            )
        ]
    built = docker_build.Image(
        f"{names.base}-image",
        context=docker_build.BuildContextArgs(location=context),
        dockerfile=docker_build.DockerfileArgs(location=f"{context}/{DOCKERFILE}"),
        platforms=[docker_build.Platform(p) for p in build.platforms],
        tags=[tag],
        push=push,
        load=not push,
        registries=registries,
        opts=opts,
    )
    # `ref` is computed by the provider: `repo:tag@sha256:...` after a push. It is the
    # tag for a load-only build (and is absent under test mocks: fall back to the tag).
    reference = built.ref.apply(lambda ref: ref or tag)
    hint = load_hint(build)
    if hint:
        pulumi.log.warn(hint)
    # Pushed: the reference carries the digest, so `Always` costs one manifest check per
    # pod start and never pulls different bits. Load-only: there is no registry to ask.
    return ImageRef(reference, "Always" if push else "IfNotPresent", build.pull_secret, built)
