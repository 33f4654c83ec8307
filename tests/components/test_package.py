"""The multi-language package (provider/): schema inference, the typed surface, construct."""

from __future__ import annotations

import json
import runpy
import typing
from pathlib import Path

import pulumi
import pytest
import yaml
from pulumi.provider.experimental.component import ComponentProvider
from pydantic import BaseModel

from components import TYPE_TOKEN, StableDiffusion, app_args
from components.config import AppConfig, generate

from . import helpers

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "stable-diffusion"


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(ComponentProvider([StableDiffusion], PACKAGE).schema)


def test_schema_resource_inputs_and_outputs(schema):
    assert schema["name"] == PACKAGE
    resource = schema["resources"][TYPE_TOKEN]
    assert resource["isComponent"] is True
    assert set(resource["inputProperties"]) == {"app", "hfToken", "registryPassword"}
    assert resource["requiredInputs"] == ["app"]
    assert set(resource["properties"]) == {"externalApi", "internalApi", "hfModel", "apiCredentials"}
    # api_credentials is absent when auth is off: not required.
    assert sorted(resource["required"]) == ["externalApi", "hfModel", "internalApi"]
    # The app is plain (validated before anything is declared); the secrets are Inputs.
    assert resource["inputProperties"]["app"]["plain"] is True
    assert "plain" not in resource["inputProperties"]["hfToken"]
    assert resource["inputProperties"]["hfToken"]["type"] == "string"


def test_schema_types_mirror_the_config(schema):
    types = schema["types"]

    def props(name: str) -> dict:
        return types[f"{PACKAGE}:index:{name}"]["properties"]

    def required(name: str) -> list:
        return sorted(types[f"{PACKAGE}:index:{name}"].get("required", []))

    assert required("App") == ["preset", "stableDiffusion"]
    assert required("HuggingFaceModel") == ["modelHfName"]
    assert props("HuggingFaceModel")["loras"]["items"]["$ref"].endswith(":index:Lora")
    assert props("Lora")["weight"]["type"] == "number"
    assert props("StableDiffusionSettings")["extraModels"]["items"]["$ref"].endswith(":index:ExtraModel")
    assert props("App")["stablestudio"]["$ref"].endswith(":index:StableStudio")
    assert props("App")["presets"]["additionalProperties"]["$ref"].endswith(":index:CustomPreset")
    assert set(props("ApiEndpoint")) == {"host", "port", "protocol", "basePath", "url"}
    assert props("ApiEndpoint")["port"]["type"] == "integer"
    assert set(props("ApiCredentials")) == {"username", "password"}
    assert all(t.get("description") for t in types.values())


# --- the typed surface (components/app_args.py) is generated from the pydantic models -----


def _models(annotation) -> list[type[BaseModel]]:
    """Every pydantic model inside an annotation (through Optional, Union, Annotated, list, dict)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found = []
    for arg in typing.get_args(annotation):
        found += _models(arg)
    return found


def _typeddict(annotation):
    """The TypedDict inside a NotRequired / Optional / list / dict annotation, or None."""
    if typing.is_typeddict(annotation):
        return annotation
    for arg in typing.get_args(annotation):
        found = _typeddict(arg)
        if found is not None:
            return found
    return None


def _compare(models: list[type[BaseModel]], typed, path: str, problems: list[str]) -> None:
    fields: dict[str, list] = {}
    for model in models:
        for name, info in model.model_fields.items():
            fields.setdefault(name, []).append(info)
    hints = typing.get_type_hints(typed, include_extras=True)
    if set(hints) != set(fields):
        problems.append(f"{path}: args has {sorted(set(hints) - set(fields))} extra, "
                        f"lacks {sorted(set(fields) - set(hints))}")
        return
    for name, infos in fields.items():
        required_everywhere = len(infos) == len(models) and all(i.is_required() for i in infos)
        if (name in typed.__required_keys__) != required_everywhere:
            problems.append(f"{path}.{name}: required in args is {name in typed.__required_keys__}")
        inner = [m for i in infos for m in _models(i.annotation)]
        nested = _typeddict(hints[name])
        if inner and nested is None:
            problems.append(f"{path}.{name}: an object in the config, not in args")
        elif nested is not None and not inner:
            problems.append(f"{path}.{name}: an object in args, not in the config")
        elif inner:
            _compare(inner, nested, f"{path}.{name}", problems)


def test_typed_surface_has_every_config_field_and_no_other():
    problems: list[str] = []
    _compare([AppConfig], app_args.App, "app", problems)
    assert problems == []


@pytest.mark.parametrize("path", [generate.APP_ARGS, generate.DOCS], ids=["app_args.py", "component.md"])
def test_generated_files_are_current(path):
    """components/app_args.py and docs/component.md's input reference say what the models
    say (types, required keys, defaults, descriptions): regenerating changes nothing."""
    assert path.read_text() == generate.expected()[path], (
        f"{path.name} is stale: run python -m components.config.generate")


def test_reference_and_schema_carry_the_models_defaults_and_descriptions(schema):
    table = generate.reference_table()
    assert "| `stable_diffusion.hugging_face_model.cache.size` | string | `50Gi` | Size of the model cache. |" in table
    assert "| `node_pool.cluster` | string | **required** (gke) | [gke] Cluster name. |" in table
    assert "| `ingress_http.class_name` | `traefik` \\| `nginx` | `traefik` |" in table
    cache = schema["types"][f"{PACKAGE}:index:Cache"]["properties"]["size"]
    assert cache["description"] == "Size of the model cache. Default: 50Gi."


# --- construct through the provider, as a TypeScript/Go/YAML program would ---------------

CAMEL_APP = {
    "preset": {"name": "gpu-l4-x1"},
    "namespace": "sd-yaml",
    "image": {"repository": "ghcr.io/acme/sd", "tag": "1.0.0"},
    "ingressHttp": {"host": "sd.example.com", "className": "nginx", "tls": {"clusterIssuer": "le"}},
    "nodePool": {"mode": "karpenter", "capacityTypes": ["spot"]},
    "stableDiffusion": {
        "replicaCount": 2.0,  # numbers arrive as floats on the wire
        "huggingFaceModel": {"modelHfName": "stabilityai/sd-turbo", "hfToken": {"key": "hfToken"},
                             "loras": [{"repo": "a/style", "weight": 0.5}]},
        "extraModels": [{"modelHfName": "stabilityai/sdxl-turbo"}],
    },
    "stablestudio": {"enabled": True, "image": {"repository": "ghcr.io/acme/stablestudio", "tag": "1"}},
}


def _construct(app: dict, **inputs) -> tuple:
    holder: dict = {}

    def program():
        provider = ComponentProvider([StableDiffusion], PACKAGE)
        # Callables make their Output inside the program (its own event loop).
        values = {key: value() if callable(value) else value for key, value in inputs.items()}
        result = provider.construct("imagegen", TYPE_TOKEN, {"app": app, **values}, None)
        holder["state"] = result.state
        for key, value in result.state.items():
            pulumi.export(key, value)

    run = helpers.run(helpers.app(), extra_config={"stable-diffusion:hfToken": "hf_x"},
                      secret_keys=["stable-diffusion:hfToken"], program=program)
    return run, holder["state"]


def test_construct_maps_schema_names_back_to_the_config():
    result, state = _construct(CAMEL_APP)
    deployment = helpers.deployment(result)
    assert deployment["metadata"] == deployment["metadata"] | {"name": "imagegen", "namespace": "sd-yaml"}
    assert deployment["spec"]["replicas"] == 2.0
    env = helpers.env(helpers.container(result))
    assert env["SD_MODEL"] == "stabilityai/sd-turbo,stabilityai/sdxl-turbo"
    assert env["SD_LORA"] == "a/style:style:0.5"
    assert env["SD_CORS_ORIGINS"] == "https://sd.example.com"
    assert result.one("NodePool")["spec"]["template"]["spec"]["requirements"]
    assert result.one("Deployment", "imagegen-stablestudio")
    # Outputs come back under their schema names, with schema-named fields.
    assert set(state) == {"externalApi", "internalApi", "hfModel", "apiCredentials"}
    assert result.outputs["externalApi"]["url"] == "https://sd.example.com/"
    assert result.outputs["internalApi"]["basePath"] == "/"
    assert result.outputs["hfModel"] == {"modelHfName": "stabilityai/sd-turbo"}
    assert "apiCredentials" in result.secret_outputs


def test_construct_with_a_secret_token_input():
    minimal = {"preset": {"name": "cpu-small"}, "image": CAMEL_APP["image"],
               "stableDiffusion": {"huggingFaceModel": {"modelHfName": "stabilityai/sd-turbo"}}}
    result, _ = _construct(minimal, hfToken=lambda: pulumi.Output.secret("hf_from_program"))
    from pulumi.runtime import rpc

    data = result.one("Secret", "imagegen-hf-token")["stringData"]
    assert rpc.is_rpc_secret(data) and rpc.unwrap_rpc_secret(data) == {"token": "hf_from_program"}


def test_construct_with_an_invalid_app_names_the_path():
    bad = {**CAMEL_APP, "preset": {"name": "gpu-b300-x1"}}
    with pytest.raises(Exception) as raised:
        _construct(bad)
    assert "stable-diffusion:app.preset.name: unknown preset 'gpu-b300-x1'" in str(raised.value)


def test_construct_without_a_required_input_names_it():
    with pytest.raises(Exception) as raised:
        _construct({"stableDiffusion": CAMEL_APP["stableDiffusion"]})
    assert "app.preset" in str(raised.value)


# --- the plugin directory ---------------------------------------------------------------


def test_plugin_manifest_and_entry_point(monkeypatch):
    manifest = yaml.safe_load((ROOT / "provider" / "PulumiPlugin.yaml").read_text())
    assert manifest["runtime"]["name"] == "python"
    requirements = (ROOT / "provider" / "requirements.txt").read_text()
    assert "-r ../requirements/infra.txt" in requirements and "torch" not in requirements.replace("never torch", "")
    calls = []
    import pulumi.provider.experimental as experimental

    monkeypatch.setattr(experimental, "component_provider_host", lambda **kw: calls.append(kw))
    runpy.run_path(str(ROOT / "provider" / "__main__.py"), run_name="__main__")
    (call,) = calls
    assert call["name"] == PACKAGE and call["components"] == [StableDiffusion]
