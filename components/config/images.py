"""`image`: a prebuilt image, or `inference/` built and pushed (or loaded into a local cluster);
and the rule for which image references a cluster's nodes can pull."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union, get_args

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from .base import (
    DNS_SUBDOMAIN,
    IMAGE_NAME,
    IMAGE_REPOSITORY,
    IMAGE_TAG,
    ConfigModel,
    ImageDigest,
    ImageRepository,
    ImageTag,
    SchemaType,
)
from .errors import PathError
from .secret_refs import ConfigSecretRef, secret_shape

# Clusters whose nodes can run an image that exists only in this machine's Docker daemon
# (docs/component.md, "Local clusters", says how the image reaches each one).
LocalCluster = Literal["kind", "k3d", "minikube", "docker-desktop", "rancher-desktop"]
LOCAL_CLUSTERS: tuple[str, ...] = get_args(LocalCluster)


def registry_host(image: str) -> Optional[str]:
    """The registry host an image reference names, or None (Docker Hub implied).

    Docker's rule (distribution/reference `splitDockerDomain`): the first path component
    is a host when it has a '.' or a ':' or is `localhost`; otherwise `acme/sd` means
    `docker.io/acme/sd` and a bare `sd` means `docker.io/library/sd`.
    """
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


class PrebuiltImage(ConfigModel):
    """An image to run as it is, pinned by tag or digest (the API's or StableStudio's)."""

    repository: ImageRepository
    """Image repository, with its registry host (e.g. `ghcr.io/acme/sd`)."""
    tag: Optional[ImageTag] = None
    """Tag (not `latest`); pulled `Always`."""
    digest: Optional[ImageDigest] = None
    """Digest (`sha256:...`); pulled `IfNotPresent`."""
    pull_secret: Optional[Annotated[str, Field(pattern=DNS_SUBDOMAIN)]] = None
    """imagePullSecret for the pods."""

    @model_validator(mode="after")
    def _tag_or_digest(self) -> "PrebuiltImage":
        if self.tag is None and self.digest is None:
            raise ValueError("needs a tag or a digest (a moving 'latest' is not deployable)")
        if self.tag == "latest":
            raise ValueError("tag 'latest' is not allowed: pin a version or a digest")
        return self

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag}"

    @property
    def pull_policy(self) -> str:
        """A digest never changes (pull once); a tag can move (pull each time)."""
        return "IfNotPresent" if self.digest else "Always"


class ImageBuild(ConfigModel):
    """Build `inference/` with pulumi-docker-build."""

    registry: Optional[Annotated[str, Field(pattern=IMAGE_REPOSITORY)]] = None
    """Registry (and path) to push to, e.g. `ghcr.io/acme` or `123.dkr.ecr.eu-west-1.amazonaws.com`; the image is deployed by digest."""
    local_cluster: Optional[LocalCluster] = None
    """Instead of a registry, for a cluster on this machine: the image is only loaded into this machine's Docker daemon and deployed as `name:tag`, pulled `IfNotPresent` (see "Local clusters")."""
    name: Annotated[str, Field(pattern=IMAGE_NAME)] = "stable-diffusion-inference"
    """Image name."""
    tag: Annotated[str, Field(pattern=IMAGE_TAG)] = "v1"
    """Tag."""
    platforms: list[Literal["linux/amd64", "linux/arm64"]] = ["linux/amd64"]
    """Platforms to build for."""
    username: Optional[str] = None
    """Registry user; goes with `password`."""
    password: Annotated[
        Optional[Union[ConfigSecretRef, str]],
        SchemaType("ConfigSecretKey", "`{key}`: a Pulumi secret config key."),
    ] = None
    """Registry password or token: `{key: NAME}` (Pulumi secret config) or a string; from another language, the component's `registryPassword` input."""
    pull_secret: Optional[Annotated[str, Field(pattern=DNS_SUBDOMAIN)]] = None
    """imagePullSecret for the pods."""

    @field_validator("password", mode="before")
    @classmethod
    def _password(cls, value: Any) -> Any:
        if isinstance(value, dict) and set(value) != {"key"}:
            raise ValueError("image.build.password must be {key: NAME} (Pulumi secret config) or a string")
        return None if value is None else secret_shape(value, "password")

    @model_validator(mode="after")
    def _credentials(self) -> "ImageBuild":
        if (self.username is None) != (self.password is None):
            raise ValueError("image.build.username and image.build.password go together")
        if self.username is not None and self.registry is None:
            raise ValueError("image.build.username needs image.build.registry")
        if self.registry is not None and self.local_cluster is not None:
            raise ValueError(
                "image.build.registry and image.build.local_cluster exclude each other: push to a "
                "registry the cluster pulls from, or load the image into a local cluster"
            )
        return self

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.name}" if self.registry else self.name


class BuiltImage(ConfigModel):
    """`{build: {...}}`."""

    build: ImageBuild = ImageBuild()
    """Build `inference/` (the repository root as context) instead of a prebuilt image."""


def _image_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "build" if "build" in value else "prebuilt"
    return "build" if isinstance(value, BuiltImage) else "prebuilt"


Image = Annotated[
    Union[Annotated[PrebuiltImage, Tag("prebuilt")], Annotated[BuiltImage, Tag("build")]],
    Discriminator(_image_kind),
    SchemaType("Image", "The inference image: `{repository, tag|digest}` (prebuilt) or `{build: {...}}`."),
]


def image_shape(value: Any) -> Any:
    """Clear errors for a dict that is neither image shape (before the union picks one)."""
    if isinstance(value, dict) and "build" in value and len(value) > 1:
        raise ValueError("image is either {repository, tag|digest} or {build: {...}}, not both")
    if isinstance(value, dict) and "build" not in value and "repository" not in value:
        raise ValueError(
            "image must be {repository, tag} (prebuilt) or {build: {registry, ...}}; "
            f"got keys {sorted(value)}"
        )
    if isinstance(value, dict) and value.get("build") is None and "build" in value:
        return {"build": {}}
    return value


# --- what the nodes can pull ----------------------------------------------------------------

NO_PULLABLE_IMAGE = (
    "no image the cluster can pull: without image.build.registry the image is only built "
    "into this machine's Docker daemon, and a remote cluster's nodes (EKS, GKE, AKS, any "
    "Karpenter or GKE pool) then fail with ErrImagePull. Set image.build.registry (push to a "
    "registry the nodes pull from, e.g. ghcr.io/acme), or image.repository with image.tag or "
    "image.digest (a prebuilt image), or, for a cluster on this machine, "
    f"image.build.local_cluster ({', '.join(LOCAL_CLUSTERS)}); see docs/component.md"
)


def no_host_message(repository: str, mode: str, example: str) -> str:
    return (
        f"'{repository}' names no registry host, so the nodes of node_pool.mode {mode} pull it "
        f"from Docker Hub (docker.io/{repository}): name the registry ({example}), or write "
        f"docker.io/{repository} if Docker Hub is meant"
    )


def check_pullable(
    repository: str, loc: tuple[str, ...], mode: str, remote: bool, local_build_hint: bool = False
) -> None:
    """A prebuilt repository: never a bare (Docker official) name; with a host on cloud pools."""
    if "/" not in repository:
        message = (
            f"'{repository}' alone means docker.io/library/{repository} (Docker's official "
            f"images): write the registry and path (e.g. ghcr.io/acme/{repository}), or "
            f"docker.io/library/{repository} if that is meant"
        )
        if local_build_hint:
            message += (
                ". An image that exists only on this machine cannot be a prebuilt image (a tag "
                "is pulled Always): use image.build with image.build.local_cluster for a local cluster"
            )
        raise PathError(loc, message)
    if remote and registry_host(repository) is None:
        raise PathError(loc, no_host_message(repository, mode, f"e.g. ghcr.io/{repository}"))
