"""The app inputs: the structured stack config `stable-diffusion:app`, as pydantic models.

One definition per input: its type, default and description (the docstring under each
field) live in these models. The multi-language package's types (components/app_args.py)
and docs/component.md's input reference are generated from them
(`python -m components.config.generate`); tests fail when either is stale.

`parse_app_config` is the only entry point: it validates the whole tree before any
resource is declared and raises one `AppConfigError` whose lines name the config path.
Every model forbids unknown keys, so a typo is an error rather than an ignored setting.

Modules by concern: base (shared model, patterns), errors (AppConfigError, paths),
secret_refs, stable_diffusion (models, LoRAs, cache, autoscaling), images, node_pools,
ingress (and network_policy), stablestudio, monitoring, app (AppConfig and the rules that
span its parts).
"""

from .app import AppConfig, PresetRef, parse_app_config
from .base import CONFIG_KEY, ConfigModel, SchemaType
from .errors import AppConfigError
from .images import LOCAL_CLUSTERS, BuiltImage, Image, ImageBuild, PrebuiltImage, registry_host
from .ingress import IngressHttp, NetworkPolicySettings, TlsClusterIssuer, TlsSecret
from .monitoring import Monitoring
from .node_pools import ExistingNodes, GkeNodePool, KarpenterNodePool, NodePool
from .secret_refs import ConfigSecretRef, KubernetesSecretRef, SecretInput
from .stable_diffusion import (
    BUILTIN_MODELS,
    Autoscaling,
    Cache,
    ExtraModel,
    HuggingFaceModel,
    Lora,
    StableDiffusionSettings,
)
from .stablestudio import StableStudio

__all__ = [
    "AppConfig", "AppConfigError", "Autoscaling", "BUILTIN_MODELS", "BuiltImage", "CONFIG_KEY", "Cache",
    "ConfigModel", "ConfigSecretRef", "ExistingNodes", "ExtraModel", "GkeNodePool", "HuggingFaceModel",
    "Image", "ImageBuild", "IngressHttp", "KarpenterNodePool", "KubernetesSecretRef", "LOCAL_CLUSTERS",
    "Lora", "Monitoring", "NetworkPolicySettings", "NodePool", "PrebuiltImage", "PresetRef", "SchemaType",
    "SecretInput", "StableDiffusionSettings", "StableStudio", "TlsClusterIssuer", "TlsSecret",
    "parse_app_config", "registry_host",
]
