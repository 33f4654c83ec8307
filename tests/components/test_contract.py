"""The contract between the two halves: what the component renders, the server accepts.

For every matrix config, the inference Deployment's containers (init container included)
are parsed by the server's own command line (`inference.__main__.parse`, the code the
image runs): every `SD_*` variable must be a setting of that command (`parse` ignores
unknown ones, so a typo or a setting the command lacks would silently do nothing) and
every value must validate. And the metric names the KEDA ScaledObject queries must be
ones the server exports.
"""

from __future__ import annotations

import re

import pytest

from inference.__main__ import COMMANDS, parse
from inference.config import env_name
from inference.metrics import Metrics

from .test_render import MATRIX

# What the kubelet fills in for a `valueFrom.fieldRef` variable, so the parser sees a
# value of the same shape as in the pod.
FIELD_STAND_INS = {"status.podIP": "10.244.3.17"}


def _inference_containers(objects: list[dict]) -> list[tuple[dict, dict]]:
    """(pod spec, container) of the inference Deployment's init and main containers."""
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"
                     and o["metadata"]["labels"]["app.kubernetes.io/component"] == "inference"]
    pod = deployment["spec"]["template"]["spec"]
    return [(pod, c) for c in pod.get("initContainers", []) + pod["containers"]]


def _mounted_file(pod: dict, container: dict, path: str) -> bool:
    """Whether `path` is a file a Secret volume mounts into the container."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        secret = volumes[mount["name"]].get("secret")
        if path.startswith(prefix) and secret:
            return path[len(prefix):] in {item["path"] for item in secret.get("items", [])}
    return False


def test_every_sd_variable_is_a_valid_setting_of_the_command_it_configures(rendered_objects, tmp_path):
    checked = 0
    failures = []
    for name, objects in rendered_objects.items():
        for pod, container in _inference_containers(objects):
            where = f"{name} {container['name']}"
            command = container["args"][0]
            settings_class = COMMANDS[command][0]
            known = {env_name(field) for field in settings_class.model_fields}
            environ = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
            for entry in container.get("env", []):
                field = entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                if field is not None:
                    if field not in FIELD_STAND_INS:
                        failures.append(f"{where}: {entry['name']} comes from {field}, which this test cannot stand in for")
                        continue
                    environ[entry["name"]] = FIELD_STAND_INS[field]
            failures += [f"{where}: {var} is not a setting of `{command}`"
                         for var in sorted(environ) if var.startswith("SD_") and var not in known]
            # The htpasswd file exists in the pod (a Secret item); point the parser at a
            # local stand-in, since the settings check that the file exists.
            # So is the replicas' shared token.
            for variable, stand_in in (("SD_AUTH_FILE", "htpasswd"), ("SD_PEER_TOKEN_FILE", "peer-token")):
                if variable in environ:
                    if not _mounted_file(pod, container, environ[variable]):
                        failures.append(f"{where}: {variable} {environ[variable]} is not mounted")
                    (tmp_path / stand_in).touch()
                    environ[variable] = str(tmp_path / stand_in)
            try:
                parsed_command, settings = parse(container["args"], environ)
            except SystemExit:
                failures.append(f"{where}: `{' '.join(container['args'])}` refused its environment "
                                "(the error is printed above)")
                continue
            checked += 1
            assert parsed_command == command
            if "SD_MODEL" in environ:
                assert settings.model == environ["SD_MODEL"].split(","), where
    print(f"\ncontract: {checked} containers of {len(rendered_objects)} configs parsed by the server")
    assert not failures, "\n".join(failures)
    assert checked >= 2 * len(MATRIX)


def _exported_metric_names() -> set[str]:
    """Series names the server's registry exposes (counters as `_total`, histograms as
    `_bucket`/`_sum`/`_count`, gauges by name)."""
    names = set()
    for family in Metrics().registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        names.update(family.name + suffix for suffix in suffixes)
    return names


@pytest.mark.parametrize("name", [n for n, c in MATRIX.items() if "autoscaling" in c["stable_diffusion"]])
def test_keda_queries_use_metrics_the_server_exports(rendered_objects, name):
    exported = _exported_metric_names()
    (scaled,) = [o for o in rendered_objects[name] if o["kind"] == "ScaledObject"]
    queries = [t["metadata"]["query"] for t in scaled["spec"]["triggers"]]
    ours = {m for q in queries for m in re.findall(r"\b(sd_[a-z0-9_]+)\b", q)}
    assert "sd_queue_depth" in ours
    assert ours <= exported, f"queried but not exported: {sorted(ours - exported)}"
