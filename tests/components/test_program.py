"""infra/: the entry point Pulumi runs, from the directory Pulumi runs it in."""

from __future__ import annotations

import json
import os
import runpy
from pathlib import Path

import yaml

from infra import mock_engine

from . import helpers

ROOT = Path(__file__).resolve().parents[2]


def test_pulumi_yaml_points_at_infra():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "stable-diffusion"
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["virtualenv"] == ".venv"
    assert project["main"].rstrip("/") == "infra"


def test_dev_stack_is_complete_and_valid():
    from components import parse_app_config

    config = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    app = parse_app_config(config["stable-diffusion:app"])
    assert app.node_pool.mode == "existing" and app.ingress_http.auth is True
    assert app.resolved_preset.gpu_count <= 1


def test_prod_stack_is_complete_and_valid():
    from components import parse_app_config
    from components.config import ConfigSecretRef, KarpenterNodePool

    config = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
    app = parse_app_config(config["stable-diffusion:app"])
    assert app.resolved_preset.gpu_count >= 1
    assert isinstance(app.node_pool, KarpenterNodePool)
    assert app.stable_diffusion.autoscaling is not None
    assert app.ingress_http.tls is not None
    assert app.stable_diffusion.hugging_face_model.revision
    token = app.stable_diffusion.hugging_face_model.hf_token
    assert isinstance(token, ConfigSecretRef)
    # The token's config key is a `secure:` value, never plaintext.
    assert set(config[f"stable-diffusion:{token.key}"]) == {"secure"}


def test_entry_point_runs_from_the_infra_directory(monkeypatch):
    """Pulumi runs `main: infra/` with infra/ as the working directory and sys.path[0]."""
    monkeypatch.chdir(ROOT / "infra")
    config = helpers.app(image={"build": {"registry": "ghcr.io/acme"}})

    def program():
        runpy.run_path(str(ROOT / "infra"), run_name="__main__")

    result = mock_engine.run(program, {helpers.APP_KEY: json.dumps(config)})
    assert set(result.outputs) == {"external_api", "internal_api", "hf_model", "api_credentials"}
    (image,) = result.of_type("docker-build:index:Image")
    # The build context is the repository root, relative to where the program runs.
    assert image.inputs["context"]["location"] == ".."
    assert (Path(os.getcwd()) / image.inputs["dockerfile"]["location"]).resolve() == ROOT / "inference" / "Dockerfile"


def test_components_never_import_the_inference_stack():
    import subprocess
    import sys

    code = ("import sys, components, infra.program, infra.render; "
            "bad = [m for m in ('torch', 'diffusers', 'inference', 'transformers') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_mock_run_leaves_the_callers_event_loop_alone():
    import asyncio

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        helpers.run(helpers.app())
        assert asyncio.get_event_loop() is loop and not loop.is_closed()
    finally:
        asyncio.set_event_loop(None)
        loop.close()
