"""`stablestudio`: StableStudio beside the API, at `path` on the API's Ingress host."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import Field, model_validator

from .base import ConfigModel, Quantity, SchemaType
from .errors import PathError
from .images import PrebuiltImage


class StableStudio(ConfigModel):
    """StableStudio beside the API, on the same Ingress host."""

    enabled: bool = False
    """Deploy StableStudio beside the API."""
    image: Annotated[
        Optional[PrebuiltImage],
        SchemaType("StableStudioImage", "Your StableStudio image (static files behind a web server; there is no official one)."),
    ] = None
    """Your StableStudio image, `{repository, tag}` or `{repository, digest}`, optional `pull_secret`; required when enabled."""
    path: Annotated[str, Field(pattern=r"^/[a-z0-9][-a-z0-9_/]*[a-z0-9]$", max_length=100)] = "/stablestudio"
    """Path on the API's Ingress host; the image must serve the app under this same path."""
    port: Annotated[int, Field(ge=1024, le=65535)] = 8080
    """The container's HTTP port (at least 1024: the pod has no capabilities)."""
    replica_count: Annotated[int, Field(ge=1, le=10)] = 1
    """Replicas."""
    cpu: Quantity = "100m"
    """CPU; requests = limits."""
    memory: Quantity = "128Mi"
    """Memory; requests = limits."""

    @model_validator(mode="after")
    def _image_when_enabled(self) -> "StableStudio":
        if self.enabled and self.image is None:
            raise PathError(
                ("image",),
                "required when stablestudio.enabled is true: {repository, tag} of your StableStudio image",
            )
        return self
