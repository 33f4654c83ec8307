"""The component's typed surface: the TypedDicts that Pulumi's schema inference reads.

`provider/` hosts `StableDiffusion` as a multi-language component; Pulumi infers the
package schema (what TypeScript, Go and YAML programs see) from these annotations. The
`app` input's types are generated from the config models (components/app_args.py, by
`python -m components.config.generate`); the component's own inputs and outputs are here.

This module must not use `from __future__ import annotations`: the analyzer reads the
annotations as objects.
"""

from typing import NotRequired, Optional, TypedDict

import pulumi

from .app_args import App


class StableDiffusionArgs(TypedDict):
    """Inputs of the component."""

    app: App
    """The `stable-diffusion:app` config, validated before any resource is declared. From Python a validated `AppConfig` is accepted too. See docs/component.md."""
    hf_token: NotRequired[pulumi.Input[str]]
    """Overrides `stable_diffusion.hugging_face_model.hf_token` (stored as a secret)."""
    registry_password: NotRequired[pulumi.Input[str]]
    """Overrides `image.build.password` for pushing the built image."""


# --- outputs ---------------------------------------------------------------------------


class ApiEndpoint(TypedDict):
    """Where the API answers."""

    host: Optional[str]
    """Hostname (external: the configured or published host)."""
    port: int
    """Port."""
    protocol: str
    """http or https."""
    base_path: str
    """Path prefix of the API."""
    url: Optional[str]
    """protocol://host[:port]/."""


class HfModel(TypedDict):
    """The model served by default."""

    model_hf_name: str
    """Hugging Face repo id."""


class ApiCredentials(TypedDict):
    """Basic-auth credentials of the API (a secret)."""

    username: str
    """User name."""
    password: str
    """Password."""
