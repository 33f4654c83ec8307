"""References to secrets: a Pulumi secret config key, or a key of an existing Kubernetes Secret."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from .base import DNS_SUBDOMAIN, ConfigModel, SchemaType


class ConfigSecretRef(ConfigModel):
    """`{key: NAME}`: the value of the Pulumi secret config key NAME."""

    key: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")]
    """Name of a Pulumi secret config key (`pulumi config set --secret NAME ...`; `ns:NAME` for another namespace)."""


class KubernetesSecretRef(ConfigModel):
    """`{secret_name, secret_key}`: a key of an existing Secret in the app's namespace."""

    secret_name: Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]
    """An existing Secret in the app's namespace."""
    secret_key: Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)]
    """The key in that Secret."""


# A literal string is accepted from Python and YAML stack config; the package schema has only
# the references (a literal token goes in the component's secret `hfToken` input).
SecretInput = Annotated[
    Union[ConfigSecretRef, KubernetesSecretRef, str],
    SchemaType("SecretRef", "A secret: `{key}` (Pulumi secret config key) or `{secret_name, secret_key}` "
                            "(an existing Kubernetes Secret)."),
]


def secret_shape(value: Any, what: str) -> Any:
    """Give a clear error for a dict that is neither secret reference shape."""
    if isinstance(value, dict):
        keys = set(value)
        if keys == {"key"}:
            return ConfigSecretRef.model_validate(value)
        if keys == {"secret_name", "secret_key"}:
            return KubernetesSecretRef.model_validate(value)
        raise ValueError(
            f"{what} must be a string, {{key: NAME}} (Pulumi secret config) or "
            f"{{secret_name, secret_key}} (existing Kubernetes Secret); got keys {sorted(keys)}"
        )
    if isinstance(value, str) and not value:
        raise ValueError(f"{what} must not be empty")
    return value
