"""`ingress_http` (the external endpoint) and `network_policy` (who may reach the pods)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from .base import DNS_SUBDOMAIN, ConfigModel, DnsLabel, SchemaType


class TlsSecret(ConfigModel):
    """`{secret_name}`: an existing TLS Secret."""

    secret_name: Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]
    """An existing TLS Secret in the namespace."""


class TlsClusterIssuer(ConfigModel):
    """`{cluster_issuer}`: cert-manager issues the certificate into `<name>-tls`."""

    cluster_issuer: Annotated[str, Field(min_length=1, pattern=DNS_SUBDOMAIN)]
    """A cert-manager ClusterIssuer."""


def _tls_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "issuer" if "cluster_issuer" in value else "secret"
    return "issuer" if isinstance(value, TlsClusterIssuer) else "secret"


Tls = Annotated[
    Union[Annotated[TlsSecret, Tag("secret")], Annotated[TlsClusterIssuer, Tag("issuer")]],
    Discriminator(_tls_kind),
    SchemaType("Tls", "`{secret_name}` (an existing TLS Secret) or `{cluster_issuer}` (cert-manager)."),
]


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR network (e.g. 10.42.0.0/16)") from None
    return value


_DEFAULT_CONTROLLER_NAMESPACE = {"traefik": "traefik", "nginx": "ingress-nginx"}


class IngressHttp(ConfigModel):
    """The external endpoint: an Ingress for the API (and StableStudio's path)."""

    auth: bool = True
    """HTTP Basic auth on the API (the `api_credentials` output)."""
    username: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")] = "admin"
    """Basic-auth user."""
    host: Optional[Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]] = None
    """External hostname. Without it the Ingress matches any host and `external_api.host` is the address the controller
    publishes."""
    class_name: Literal["traefik", "nginx"] = "traefik"
    """Ingress class: the controller that serves it."""
    tls: Optional[Tls] = None
    """TLS: `{secret_name}` (an existing TLS Secret) or `{cluster_issuer}` (cert-manager fills `<name>-tls`); needs `host`."""
    controller_namespace: Optional[DnsLabel] = None
    """Namespace of the ingress controller's pods, admitted by the NetworkPolicies. Default: `traefik` (traefik) or
    `ingress-nginx` (nginx)."""
    trusted_proxies: list[Annotated[str, AfterValidator(_network)]] = []
    """Addresses or CIDR networks of the proxies in front of the API, usually the ingress controller's pod network (e.g.
    `10.42.0.0/16`): only their `X-Forwarded-For`/`-Proto` is believed, so the server's log shows the real client
    (`SD_TRUSTED_PROXIES`). Default: none, and the log shows the controller's pod."""
    max_body_size: Annotated[str, Field(pattern=r"^[0-9]+[kKmMgG]?$")] = "64m"
    """nginx `proxy-body-size`."""
    timeout_seconds: Annotated[int, Field(ge=30, le=3600)] = 600
    """nginx `proxy-read-timeout` / `proxy-send-timeout`."""
    annotations: dict[str, str] = {}
    """Extra Ingress annotations, merged in last."""

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_shape(cls, value: Any) -> Any:
        if isinstance(value, dict) and set(value) not in ({"secret_name"}, {"cluster_issuer"}):
            raise ValueError(
                "tls must be {secret_name: NAME} (an existing TLS Secret) or "
                f"{{cluster_issuer: NAME}} (cert-manager); got keys {sorted(value)}"
            )
        return value

    @model_validator(mode="after")
    def _tls_needs_host(self) -> "IngressHttp":
        if self.tls is not None and self.host is None:
            raise ValueError("tls needs ingress_http.host (the certificate's hostname)")
        return self

    @property
    def ingress_controller_namespace(self) -> str:
        return self.controller_namespace or _DEFAULT_CONTROLLER_NAMESPACE[self.class_name]


class NetworkPolicySettings(ConfigModel):
    """Who may reach the pods."""

    model_config = ConfigDict(title="NetworkPolicy")

    enabled: bool = True
    """Declare the NetworkPolicy."""
    allowed_namespaces: list[DnsLabel] = []
    """In-cluster namespaces whose pods may call the API (besides the ingress controller's)."""
