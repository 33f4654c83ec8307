"""A reusable Pulumi component that serves Stable Diffusion on Kubernetes.

    from components import StableDiffusion
    sd = StableDiffusion("stable-diffusion", {"app": pulumi.Config().require_object("app")})

Never imports torch/diffusers/inference: `pulumi up` needs only the infra requirements.
"""

from .config import AppConfig, AppConfigError, parse_app_config
from .presets import BUILTIN_PRESETS, Preset
from .stable_diffusion import TYPE_TOKEN, StableDiffusion, StableDiffusionArgs

__all__ = [
    "AppConfig",
    "AppConfigError",
    "BUILTIN_PRESETS",
    "Preset",
    "StableDiffusion",
    "StableDiffusionArgs",
    "TYPE_TOKEN",
    "parse_app_config",
]
