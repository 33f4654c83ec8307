"""What every config model shares: the base model, the patterns, the constrained types.

Each pattern is written once here; `PATTERN_NAMES` turns a pattern mismatch into words
("is not a DNS label ...") in the error messages (errors.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

CONFIG_KEY = "stable-diffusion:app"

# Kubernetes quantities (cpu "500m", memory "24Gi", storage "50Gi").
QUANTITY = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Label keys and values as Kubernetes accepts them: an optional DNS-subdomain prefix and a
# name of at most 63 characters; values of at most 63, alphanumeric at both ends.
LABEL_KEY = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
# A Prometheus duration as the PodMonitor CRD accepts it (e.g. 15s, 1m, 1m30s).
PROMETHEUS_DURATION = r"^(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$"
# A Karpenter duration (consolidateAfter, expireAfter).
KARPENTER_DURATION = r"^([0-9]+(s|m|h))+$|^Never$"
# A LoRA adapter's name in `<lora:NAME:WEIGHT>` prompt tags.
LORA_NAME = r"^[A-Za-z0-9._-]+$"
# Image references: repository (with an optional registry host and port), tag, digest.
IMAGE_REPOSITORY = r"^[a-z0-9]+([._:/-][a-z0-9]+)*$"
IMAGE_NAME = r"^[a-z0-9]+([._/-][a-z0-9]+)*$"  # a repository path without a host
IMAGE_TAG = r"^[\w][\w.-]{0,127}$"
IMAGE_DIGEST = r"^sha256:[0-9a-f]{64}$"

PATTERN_NAMES = {
    QUANTITY: "a Kubernetes quantity (e.g. 500m, 4, 24Gi)",
    DNS_LABEL: "a DNS label (lower-case letters, digits and '-', at most 63)",
    DNS_SUBDOMAIN: "a DNS name (lower-case letters, digits, '-' and '.')",
    LORA_NAME: "an adapter name (letters, digits, '.', '_' and '-')",
    LABEL_KEY: "a Kubernetes label key ([prefix/]name, name at most 63 of letters, digits, '-', '_', '.')",
    LABEL_VALUE: "a Kubernetes label value (at most 63 of letters, digits, '-', '_', '.')",
    PROMETHEUS_DURATION: "a Prometheus duration (e.g. 15s, 1m, 1m30s)",
}

Quantity = Annotated[str, Field(pattern=QUANTITY)]
DnsLabel = Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
ImageRepository = Annotated[str, Field(pattern=IMAGE_REPOSITORY)]
ImageTag = Annotated[str, Field(pattern=IMAGE_TAG)]
ImageDigest = Annotated[str, Field(pattern=IMAGE_DIGEST)]


class ConfigModel(BaseModel):
    """A part of the app config. Unknown keys are errors (a typo is never silently ignored);
    the docstring under each field is its description (docs and the package schema)."""

    # `pulumi config set --path app.image.tag 2` stores an all-digit value as a number; a
    # text field (tag, revision, namespace, ...) takes it as the text the user typed.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True,
                              use_attribute_docstrings=True)


@dataclass(frozen=True)
class SchemaType:
    """`Annotated` marker: the object type a field has in the multi-language package schema.

    On a union it names the one object that has the keys of every member (schema inference
    accepts no unions); on a model it renames it (the same model in two places). With
    `tag_prefix`, a key that only some members have is described as `TAG: ...`.
    """

    name: str
    description: str
    tag_prefix: bool = False
