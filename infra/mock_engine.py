"""Run the Pulumi program under a recording mock engine (no CLI, no cluster).

Used by `python -m infra.render` and by the tests. Each `run()` gets a fresh context
(config, settings, root stack), a fresh event loop and fresh mocks, so runs never leak
into each other. The mocks echo a resource's inputs back as its outputs and compute
nothing a provider would (no IDs, no statuses, no image digests): the program must not
depend on those being present.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pulumi
import yaml
from pulumi.runtime import rpc
from pulumi.runtime.stack import wait_for_rpcs

PROJECT = "stable-diffusion"
SECRET_PLACEHOLDER = "[secret]"
REDACTED = "<redacted>"


@dataclass
class Recorded:
    """One resource registration as the engine saw it."""

    type: str
    name: str
    inputs: dict
    custom: bool

    @property
    def is_kubernetes_object(self) -> bool:
        return (
            self.type.startswith("kubernetes:")
            and "apiVersion" in self.inputs
            and "kind" in self.inputs
        )


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Recorded] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(Recorded(args.typ, args.name, args.inputs, bool(args.custom)))
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}, None


@dataclass
class RunResult:
    resources: list[Recorded]
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    value: Any = None  # what the program function returned
    urns: list[str] = field(default_factory=list)  # every registration's URN (parent chain in the type)

    def of_type(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def kubernetes_objects(self) -> list[dict]:
        return [r.inputs for r in self.resources if r.is_kubernetes_object]

    def find(self, kind: str, name: Optional[str] = None) -> list[dict]:
        return [
            o for o in self.kubernetes_objects()
            if o["kind"] == kind and (name is None or o.get("metadata", {}).get("name") == name)
        ]

    def one(self, kind: str, name: Optional[str] = None) -> dict:
        found = self.find(kind, name)
        if len(found) != 1:
            raise AssertionError(f"expected one {kind} {name or ''}, found {len(found)}")
        return found[0]


def stack_config(path: Path) -> tuple[dict[str, str], list[str]]:
    """A `Pulumi.<stack>.yaml` -> (config as the engine passes it, secret keys).

    Values are strings, structured ones JSON-encoded. `secure:` values cannot be
    decrypted here: they become a placeholder and the key is marked secret.
    """
    document = yaml.safe_load(Path(path).read_text()) or {}
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in (document.get("config") or {}).items():
        found_secret = False

        def replace(node: Any) -> Any:
            nonlocal found_secret
            if isinstance(node, dict) and set(node) == {"secure"}:
                found_secret = True
                return SECRET_PLACEHOLDER
            if isinstance(node, dict):
                return {k: replace(v) for k, v in node.items()}
            if isinstance(node, list):
                return [replace(v) for v in node]
            return node

        value = replace(value)
        config[key] = value if isinstance(value, str) else json.dumps(value)
        if found_secret:
            secret_keys.append(key)
    return config, secret_keys


def run(
    program: Callable[[], Any],
    config: dict[str, str],
    secret_keys: Optional[list[str]] = None,
    stack: str = "dev",
    project: str = PROJECT,
    mocks: Optional[RecordingMocks] = None,
) -> RunResult:
    """Run `program` as a Pulumi program with `config`; return what it declared.

    `mocks` lets a caller answer for resources the echoing mocks cannot (for example a
    StackReference's outputs); it must be a fresh RecordingMocks (subclass) per run.

    The run happens on a thread of its own, in an empty context: its event loop and
    Pulumi's settings never touch the caller's (a test suite's) loop or state.
    """
    context = contextvars.Context()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pulumi-mock") as pool:
        future = pool.submit(
            context.run, _run, program, config, list(secret_keys or []), stack, project, mocks or RecordingMocks()
        )
        return future.result()


def _run(program, config, secret_keys, stack, project, mocks) -> RunResult:
    from pulumi.runtime import settings

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        settings.ROOT.set(None)
        pulumi.runtime.set_all_config(dict(config), secret_keys)
        pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False)
        # MockSettings leaves these to whatever an earlier run left behind: start clean.
        settings.SETTINGS.outputs = set()
        settings.SETTINGS.lock = threading.Lock()
        try:
            value = program()
        except BaseException:
            # Let what was already queued finish on this loop before it closes.
            try:
                loop.run_until_complete(wait_for_rpcs())
            except Exception:  # noqa: BLE001 - the program's own error is the one to report
                pass
            raise
        loop.run_until_complete(wait_for_rpcs())
        root = settings.get_root_resource()
        outputs, secret = loop.run_until_complete(_resolve(getattr(root, "outputs", {})))
        loop.run_until_complete(wait_for_rpcs())
        urns = list(settings.SETTINGS.monitor.resources)
        return RunResult(mocks.resources, outputs, secret, value, urns)
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        asyncio.set_event_loop(None)


async def _resolve(exports: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    values: dict[str, Any] = {}
    secret: set[str] = set()
    for name, value in exports.items():
        output = pulumi.Output.from_input(value)
        values[name] = await output.future()
        if await output.is_secret():
            secret.add(name)
    return values, secret


def redact(value: Any) -> Any:
    """Replace every Pulumi secret in a recorded value by a marker."""
    if rpc.is_rpc_secret(value):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def plain(value: Any) -> Any:
    """Mock engines hand numbers back as floats: 8000.0 -> 8000."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def manifest(obj: dict) -> dict:
    """A recorded Kubernetes object as it would be applied, secrets redacted.

    Every Pulumi secret becomes `<redacted>`; so does every value of a Secret's
    `data`/`stringData`, secret-marked or not (keys are kept).
    """
    obj = dict(obj)
    if obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1":
        for field_name in ("data", "stringData"):
            value = obj.get(field_name)
            if rpc.is_rpc_secret(value):
                value = rpc.unwrap_rpc_secret(value)
            if isinstance(value, dict):
                obj[field_name] = {k: REDACTED for k in value}
    return plain(redact(obj))
