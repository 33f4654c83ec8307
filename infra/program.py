"""The Pulumi program: stack config `stable-diffusion:app` -> one StableDiffusion component.

`main()` is what `pulumi up` runs (via infra/__main__.py) and what `python -m infra.render`
runs under a recording mock engine, so both see exactly the same program.
"""

from __future__ import annotations

import pulumi

from components import AppConfigError, StableDiffusion, parse_app_config

CONFIG_NAMESPACE = "stable-diffusion"
CONFIG_KEY = "app"
COMPONENT_NAME = "stable-diffusion"


def load_app_config():
    """Read and validate `stable-diffusion:app` (raises AppConfigError)."""
    raw = pulumi.Config(CONFIG_NAMESPACE).get_object(CONFIG_KEY)
    return parse_app_config(raw)


def main() -> StableDiffusion:
    try:
        app = load_app_config()
    except AppConfigError as error:
        # RunError: Pulumi prints the message without a Python traceback.
        raise pulumi.RunError(str(error)) from None
    sd = StableDiffusion(COMPONENT_NAME, {"app": app})
    pulumi.export("external_api", sd.external_api)
    pulumi.export("internal_api", sd.internal_api)
    pulumi.export("hf_model", sd.hf_model)
    if sd.api_credentials is not None:
        pulumi.export("api_credentials", sd.api_credentials)
    return sd
