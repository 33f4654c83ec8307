"""Builders shared by the component tests: app configs and one program run each."""

from __future__ import annotations

import copy
import json
from typing import Any, Callable, Optional

from infra import mock_engine
from infra.program import main as program_main

APP_KEY = "stable-diffusion:app"


def app(**overrides: Any) -> dict:
    """A minimal valid app config; keyword overrides replace top-level keys."""
    base: dict[str, Any] = {
        "preset": {"name": "gpu-l4-x1"},
        "stable_diffusion": {"hugging_face_model": {"model_hf_name": "stabilityai/sd-turbo"}},
        "image": {"repository": "ghcr.io/acme/sd", "tag": "1.0.0"},
    }
    base.update(copy.deepcopy(overrides))
    return base


def with_sd(config: dict, **settings: Any) -> dict:
    """Merge keys into `stable_diffusion`."""
    config = copy.deepcopy(config)
    config["stable_diffusion"].update(settings)
    return config


def with_model(config: dict, **model: Any) -> dict:
    config = copy.deepcopy(config)
    config["stable_diffusion"]["hugging_face_model"].update(model)
    return config


def run(
    config: dict,
    extra_config: Optional[dict[str, str]] = None,
    secret_keys: Optional[list[str]] = None,
    program: Callable[[], Any] = program_main,
) -> mock_engine.RunResult:
    """Run the real program with `config` as `stable-diffusion:app`."""
    values = {APP_KEY: json.dumps(config), **(extra_config or {})}
    return mock_engine.run(program, values, secret_keys or [])


def deployment(result: mock_engine.RunResult) -> dict:
    """The inference Deployment (StableStudio's, when enabled, is another one)."""
    (found,) = [d for d in result.find("Deployment")
                if d["metadata"]["labels"]["app.kubernetes.io/component"] == "inference"]
    return found


def pod_spec(result: mock_engine.RunResult) -> dict:
    return deployment(result)["spec"]["template"]["spec"]


def container(result: mock_engine.RunResult, name: str = "inference") -> dict:
    spec = pod_spec(result)
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name}")


def env(c: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def volumes(result: mock_engine.RunResult) -> dict[str, dict]:
    return {v["name"]: v for v in pod_spec(result)["volumes"]}


def is_secret(value) -> bool:
    """Whether a rendered value is a Pulumi secret."""
    from pulumi.runtime import rpc

    return rpc.is_rpc_secret(value)


def unwrap(value):
    """A rendered value with its secret wrapper, if any, taken off."""
    from pulumi.runtime import rpc

    return rpc.unwrap_rpc_secret(value) if rpc.is_rpc_secret(value) else value


def pulumi_warnings(monkeypatch) -> list[str]:
    """The list `pulumi.log.warn` appends its messages to from now on."""
    import pulumi

    seen: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: seen.append(message))
    return seen

# A Prometheus address for autoscaling inputs (KEDA's trigger queries it).
PROM = "http://prometheus-server.monitoring.svc:9090"
