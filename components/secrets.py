"""Secrets and auth: the Hugging Face token and the API's basic-auth credentials.

HF token, by its input shape:
- `{key: NAME}`: the Pulumi secret config value NAME (`config.require_secret`), put in a
  Secret this component owns;
- `{secret_name, secret_key}`: an existing Secret, referenced, nothing created;
- a string: wrapped with `Output.secret` and put in a Secret this component owns.
The pod mounts the token as a file and points `HF_TOKEN_PATH` at it (huggingface_hub
reads the token from there), so it is never in an environment variable.

Auth: a `pulumi_random.RandomPassword` whose `bcrypt_hash` goes into an htpasswd-format
Secret (`user:<bcrypt>`) that the server mounts (`SD_AUTH_FILE`). The hash is computed
once by the provider and kept in state, so a second `pulumi up` shows no diff. The same
Secret holds the replicas' shared token (another `RandomPassword`, `SD_PEER_TOKEN_FILE`):
a starting replica reads the others' current checkpoint with it, as no client's
credentials exist then; it opens nothing but that read (docs/api.md). Both are mounted
as files, never put in environment variables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from .args import ApiCredentials
from .config import AppConfig, ConfigSecretRef, KubernetesSecretRef, SecretInput
from .meta import Names

HF_TOKEN_KEY = "token"
HTPASSWD_KEY = "htpasswd"
PEER_TOKEN_KEY = "peer-token"
CONFIG_NAMESPACE = "stable-diffusion"


def config_secret(ref: ConfigSecretRef) -> pulumi.Output[str]:
    """`{key: NAME}` -> the secret config value (`ns:NAME` reads another namespace)."""
    namespace, _, key = ref.key.rpartition(":")
    return pulumi.Config(namespace or CONFIG_NAMESPACE).require_secret(key)


def secret_value(value: SecretInput) -> pulumi.Output[str]:
    """A config-key reference or a literal string, as a secret Output."""
    if isinstance(value, ConfigSecretRef):
        return config_secret(value)
    if isinstance(value, KubernetesSecretRef):
        raise TypeError("an existing Kubernetes Secret has no value here")
    return pulumi.Output.secret(value)


@dataclass(frozen=True)
class SecretKeyRef:
    """Where the pod finds a secret value: a key of a Secret in its namespace."""

    name: str
    key: str
    resource: Optional[pulumi.Resource] = None


def hf_token(
    app: AppConfig,
    names: Names,
    opts: pulumi.ResourceOptions,
    override: Optional[pulumi.Input[str]] = None,
) -> Optional[SecretKeyRef]:
    """Declare (or reference) the HF token Secret. `override` (a component arg) wins."""
    token = app.stable_diffusion.hugging_face_model.hf_token
    if override is not None:
        value = pulumi.Output.secret(override)
    elif token is None:
        return None
    elif isinstance(token, KubernetesSecretRef):
        return SecretKeyRef(token.secret_name, token.secret_key)
    else:
        value = secret_value(token)
    secret = k8s.core.v1.Secret(
        f"{names.base}-hf-token",
        metadata=names.metadata(names.hf_token_secret),
        type="Opaque",
        string_data={HF_TOKEN_KEY: value},
        opts=opts,
    )
    return SecretKeyRef(names.hf_token_secret, HF_TOKEN_KEY, secret)


@dataclass(frozen=True)
class Auth:
    secret: k8s.core.v1.Secret
    credentials: pulumi.Output[ApiCredentials]  # secret


def basic_auth(app: AppConfig, names: Names, opts: pulumi.ResourceOptions) -> Optional[Auth]:
    if not app.ingress_http.auth:
        return None
    username = app.ingress_http.username
    password = random.RandomPassword(
        f"{names.base}-api-password",
        length=32,
        special=False,  # safe in URLs and shell one-liners
        opts=opts,
    )
    # `or ""` only matters under test mocks, which do not compute provider outputs.
    htpasswd = password.bcrypt_hash.apply(lambda digest: f"{username}:{digest or ''}\n")
    secret_htpasswd: pulumi.Output[str] = pulumi.Output.secret(htpasswd)
    # Only replicas read it: no client needs it, so it is in no output.
    peer_token = random.RandomPassword(f"{names.base}-peer-token", length=32, special=False, opts=opts)
    secret_peer_token: pulumi.Output[str] = pulumi.Output.secret(peer_token.result.apply(lambda value: value or ""))
    secret = k8s.core.v1.Secret(
        f"{names.base}-htpasswd",
        metadata=names.metadata(names.auth_secret),
        type="Opaque",
        string_data={HTPASSWD_KEY: secret_htpasswd, PEER_TOKEN_KEY: secret_peer_token},
        opts=opts,
    )
    credentials: pulumi.Output[ApiCredentials] = pulumi.Output.secret(
        pulumi.Output.all(username, password.result).apply(
            lambda parts: ApiCredentials(username=parts[0], password=parts[1])
        )
    )
    return Auth(secret, credentials)


def registry_password(app: AppConfig, override: Optional[pulumi.Input[str]] = None):
    build = getattr(app.image, "build", None)
    if override is not None:
        return pulumi.Output.secret(override)
    if build is None or build.password is None:
        return None
    return secret_value(build.password)
