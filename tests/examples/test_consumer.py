"""examples/consumer: a second stack that reads the app stack's outputs by StackReference.

The app stack's outputs are produced by running the real app program (infra/) under the
mock engine, then served to the consumer's StackReference: renaming an output in infra/
breaks these tests, as it would break `pulumi up` of the consumer.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pulumi
import pytest
from pulumi.runtime import rpc

from infra import mock_engine
from infra.program import main as app_program

REPO = Path(__file__).resolve().parents[2]
CONSUMER_DIR = REPO / "examples" / "consumer"
APP_STACK = "acme/stable-diffusion/dev"
PROJECT = "stable-diffusion-consumer"


def _consumer_module():
    spec = importlib.util.spec_from_file_location("consumer", CONSUMER_DIR / "consumer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class StackReferenceMocks(mock_engine.RecordingMocks):
    """Answers StackReference reads with another stack's (recorded) outputs."""

    def __init__(self, stacks: dict[str, tuple[dict, set[str]]]):
        super().__init__()
        self.stacks = stacks

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        if args.typ == "pulumi:pulumi:StackReference":
            outputs, secret = self.stacks[args.inputs["name"]]
            self.resources.append(mock_engine.Recorded(args.typ, args.name, args.inputs, True))
            return args.name, {"name": args.inputs["name"], "outputs": outputs, "secretOutputNames": sorted(secret)}
        resource_id, state = super().new_resource(args)
        metadata = state.get("metadata")
        if args.typ.startswith("kubernetes:") and isinstance(metadata, dict) and "name" not in metadata:
            # What pulumi-kubernetes does for an object without metadata.name: auto-name it.
            state = {**state, "metadata": {**metadata, "name": f"{args.name}-0a1b2c3d"}}
        return resource_id, state


class RandomPasswordMocks(mock_engine.RecordingMocks):
    """Computes what the random provider would: a password and its bcrypt hash."""

    PASSWORD = "generated-Password-0123"

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        resource_id, state = super().new_resource(args)
        if args.typ == "random:index/randomPassword:RandomPassword":
            state = {**state, "result": self.PASSWORD, "bcryptHash": "$2a$10$" + "x" * 53}
        return resource_id, state


@pytest.fixture(scope="module")
def app_stack():
    config, secret_keys = mock_engine.stack_config(REPO / "Pulumi.dev.yaml")
    result = mock_engine.run(app_program, config, secret_keys, mocks=RandomPasswordMocks())
    assert result.outputs["api_credentials"]["password"] == RandomPasswordMocks.PASSWORD
    assert set(_consumer_module().OUTPUTS_USED) <= set(result.outputs)
    return result.outputs, result.secret_outputs


def _run_consumer(outputs: dict, secret: set[str]) -> mock_engine.RunResult:
    config = {f"{PROJECT}:app_stack": APP_STACK, f"{PROJECT}:namespace": "render-jobs"}
    return mock_engine.run(
        _consumer_module().main, config, project=PROJECT, mocks=StackReferenceMocks({APP_STACK: (outputs, secret)})
    )


def test_the_job_calls_the_internal_api_of_the_app_stack(app_stack):
    outputs, secret = app_stack
    result = _run_consumer(outputs, secret)
    job = result.one("Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["SD_URL"]["value"] == outputs["internal_api"]["url"].rstrip("/")
    assert env["SD_URL"]["value"].startswith("http://") and ".svc.cluster.local" in env["SD_URL"]["value"]
    assert json.loads(env["SD_BODY"]["value"])["prompt"]
    assert env["SD_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "sd-api-credentials", "key": "password"}
    assert job["metadata"]["namespace"] == "render-jobs"
    assert result.outputs["app_url"] == outputs["external_api"]["url"]
    assert result.outputs["render_job"] == "render-jobs/render-0a1b2c3d"


def test_credentials_stay_secret_across_the_reference(app_stack):
    outputs, secret = app_stack
    assert "api_credentials" in secret  # the app stack exports them as a secret
    result = _run_consumer(outputs, secret)
    recorded = result.one("Secret", "sd-api-credentials")
    assert rpc.is_rpc_secret(recorded["stringData"])  # still a secret in the consumer
    assert set(mock_engine.manifest(recorded)["stringData"].values()) == {mock_engine.REDACTED}
    for obj in result.kubernetes_objects():
        assert RandomPasswordMocks.PASSWORD not in json.dumps(mock_engine.manifest(obj), default=str)


@pytest.mark.parametrize("renamed", ["internal_api", "external_api", "api_credentials"])
def test_renaming_an_output_of_the_app_stack_breaks_the_consumer(app_stack, renamed):
    outputs, secret = app_stack
    outputs = {(f"{k}_renamed" if k == renamed else k): v for k, v in outputs.items()}
    with pytest.raises(Exception, match=renamed):
        _run_consumer(outputs, secret)


def test_consumer_objects_pass_kubernetes_validate_strict(app_stack):
    import kubernetes_validate

    from tests.components.test_render import TARGET_K8S

    result = _run_consumer(*app_stack)
    objects = [mock_engine.manifest(obj) for obj in result.kubernetes_objects()]
    assert sorted(obj["kind"] for obj in objects) == ["Job", "Namespace", "Secret"]
    for obj in objects:
        kubernetes_validate.validate(obj, TARGET_K8S, strict=True)  # raises on any violation


def test_the_app_dev_stack_admits_the_consumer_dev_namespace():
    """The render Job's traffic passes the app's NetworkPolicy in the shipped dev stacks."""
    import yaml

    consumer_config = yaml.safe_load((CONSUMER_DIR / "Pulumi.dev.yaml").read_text())["config"]
    consumer_namespace = consumer_config[f"{PROJECT}:namespace"]
    config, secret_keys = mock_engine.stack_config(REPO / "Pulumi.dev.yaml")
    policy = mock_engine.run(app_program, config, secret_keys, mocks=RandomPasswordMocks()).one("NetworkPolicy")
    admitted = {
        namespace
        for rule in policy["spec"]["ingress"]
        for peer in rule["from"]
        for expression in peer.get("namespaceSelector", {}).get("matchExpressions", [])
        if expression["key"] == "kubernetes.io/metadata.name" and expression["operator"] == "In"
        for namespace in expression["values"]
    }
    assert consumer_namespace in admitted
