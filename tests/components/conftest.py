"""The rendered test matrix (test_render.MATRIX), shared by the render, custom-resource
and contract tests: every config is rendered once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from infra import render

from . import helpers


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, list[Path]]:
    from .test_render import MATRIX

    root = tmp_path_factory.mktemp("rendered")
    out: dict[str, list[Path]] = {}
    for name, config in MATRIX.items():
        values = {helpers.APP_KEY: json.dumps(config), "stable-diffusion:hfToken": "[secret]"}
        out[name] = render.render(values, ["stable-diffusion:hfToken"], name, root / name)
    return out


@pytest.fixture(scope="session")
def rendered_objects(rendered) -> dict[str, list[dict]]:
    return {name: [yaml.safe_load(p.read_text()) for p in paths] for name, paths in rendered.items()}
