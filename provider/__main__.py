"""Pulumi plugin entry point: hosts `components.StableDiffusion` as a multi-language component.

`pulumi package add <repo>/provider` runs this file to read the package schema and
generate an SDK for the consuming program's language; `pulumi up` in that program runs
it again to construct the component. The package is named `stable-diffusion`, so the
resource token is `stable-diffusion:index:StableDiffusion`, the same as in Python.

The components live in the repository root (one level up), which is put on sys.path.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pulumi.provider.experimental import component_provider_host  # noqa: E402

from components import StableDiffusion  # noqa: E402

PACKAGE = "stable-diffusion"
VERSION = "0.1.0"

if __name__ == "__main__":
    component_provider_host(components=[StableDiffusion], name=PACKAGE, version=VERSION)
