"""What a real cluster checks on the rendered custom objects and images.

Every custom object of every matrix config (test_render.MATRIX) goes through:
- its upstream CRD schema, unknown fields as errors (crd_schemas.py, tests/crds);
- the CRD's CEL rules and the operator's admission checks (cel_rules.py), for both the
  oldest and the newest supported Karpenter v1 release;
and every container image of a config on a remote pool must name a registry host
(image_rules.py). The validators find kinds by apiVersion/kind, so a new custom kind is
checked as soon as it is rendered, and fails if no schema for it is installed.
"""

from __future__ import annotations

import pulumi
import pytest

from components import AppConfigError
from components.config import registry_host

from . import cel_rules, crd_schemas, helpers, image_rules
from .test_render import MATRIX


def _custom(rendered_objects) -> list[tuple[str, dict]]:
    return [(name, obj) for name, objects in rendered_objects.items()
            for obj in objects if crd_schemas.is_custom(obj)]


def _report(failures: list[str]) -> str:
    return "\n".join(failures)


def test_every_custom_object_matches_its_upstream_crd_schema(rendered_objects):
    custom = _custom(rendered_objects)
    kinds = {obj["kind"] for _, obj in custom}
    assert {"NodePool", "ScaledObject"} <= kinds
    results = crd_schemas.validate([obj for _, obj in custom])
    failures = [f"{name} {obj['kind']}/{obj['metadata']['name']}: {error}"
                for (name, obj), errors in zip(custom, results) for error in errors]
    configs = {name for name, _ in custom}
    print(f"\nCRD schemas: {len(custom)} custom objects of {len(configs)} configs "
          f"({', '.join(sorted(kinds))})")
    assert not failures, _report(failures)


def test_every_custom_object_passes_the_crd_cel_rules(rendered_objects):
    custom = _custom(rendered_objects)
    checked = [(name, obj) for name, obj in custom if (obj["apiVersion"], obj["kind"]) in cel_rules.RULES]
    assert {obj["kind"] for _, obj in checked} == {"NodePool", "ScaledObject"}
    failures = [f"{name} {obj['kind']}/{obj['metadata']['name']}: {problem}"
                for name, obj in checked for problem in cel_rules.violations(obj)]
    print(f"\nCEL rules: {len(checked)} objects of {len({n for n, _ in checked})} configs")
    assert not failures, _report(failures)


def test_every_image_of_a_remote_pool_names_a_registry(rendered_objects):
    remote = [name for name, config in MATRIX.items()
              if image_rules.pool_mode(config) in image_rules.REMOTE_POOL_MODES]
    assert len(remote) >= 4
    images = [i for name in remote for i in image_rules.container_images(rendered_objects[name])]
    assert any("initContainers" in where for where, _ in images)
    assert any("stablestudio" in where for where, _ in images)
    failures = [f"{name}: {problem}" for name in remote
                for problem in image_rules.unpullable_images(MATRIX[name], rendered_objects[name])]
    print(f"\nimages: {len(images)} container images of {len(remote)} remote-pool configs")
    assert not failures, _report(failures)


@pytest.mark.parametrize("node_pool", ["karpenter", {"mode": "gke", "cluster": "c", "location": "us-central1"}])
def test_a_remote_pool_config_without_an_image_is_refused_or_pullable(node_pool):
    # The seed's example config: no `image:` key, so the image is built into the local
    # Docker daemon only. A remote pool cannot pull it: the config must be refused at
    # validation, naming the inputs that fix it, or render only pullable images.
    config = helpers.app(node_pool=node_pool)
    del config["image"]
    try:
        result = helpers.run(config)
    except (AppConfigError, pulumi.RunError) as error:  # the program re-raises it as a RunError
        assert "image.build.registry" in str(error) and "image.repository" in str(error)
        return
    problems = image_rules.unpullable_images(config, result.find("Deployment"))
    assert not problems, _report(problems)


# --- the rules themselves: each catches what it must --------------------------------------


def _nodepool(labels=None, requirements=None, disruption=None) -> dict:
    return {
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "p"},
        "spec": {
            "template": {"metadata": {"labels": labels or {}},
                         "spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "d"},
                                  "requirements": requirements or []}},
            "disruption": disruption or {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "5m"},
        },
    }


def test_cel_rules_reject_kubernetes_io_template_labels_before_karpenter_1_9_only():
    problems = cel_rules.violations(_nodepool(labels={"app.kubernetes.io/part-of": "sd"}))
    assert problems == ["Karpenter v1.0-v1.8: spec.template.metadata.labels['app.kubernetes.io/part-of']: "
                        'label domain "kubernetes.io" is restricted']
    assert cel_rules.violations(_nodepool(labels={"stable-diffusion/pool": "p", "kubernetes.io/os": "linux",
                                                  "node.kubernetes.io/role": "gpu"})) == []
    assert any("karpenter.sh" in p for p in cel_rules.violations(_nodepool(labels={"karpenter.sh/nodepool": "x"})))
    assert any("k8s.io" in p for p in cel_rules.violations(_nodepool(labels={"x.k8s.io/a": "b"})))


def test_cel_rules_check_requirements():
    good = [{"key": "karpenter.k8s.aws/instance-gpu-memory", "operator": "Gt", "values": ["20000"]},
            {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"], "minValues": 1},
            {"key": "node.kubernetes.io/instance-type", "operator": "Exists"}]
    assert cel_rules.violations(_nodepool(requirements=good)) == []
    bad = [{"key": "a", "operator": "In", "values": []},
           {"key": "b", "operator": "Gt", "values": ["1", "2"]},
           {"key": "c", "operator": "Lt", "values": ["x"]},
           {"key": "d", "operator": "In", "values": ["1"], "minValues": 2},
           {"key": "e", "operator": "Exists", "values": ["1"]},
           {"key": "karpenter.k8s.aws/made-up", "operator": "Exists"},
           {"key": "kubernetes.io/hostname", "operator": "Exists"}]
    problems = "\n".join(cel_rules.violations(_nodepool(requirements=bad)))
    for index in range(5):
        assert f"requirements[{index}]:" in problems
    assert 'label domain "karpenter.k8s.aws" is restricted' in problems
    assert 'label "kubernetes.io/hostname" is restricted' in problems


def test_cel_rules_check_disruption():
    assert cel_rules.violations(_nodepool(disruption={"consolidationPolicy": "WhenEmpty"})) == [
        "spec.disruption.consolidateAfter: required, a duration like 30s/5m or Never"]
    problems = cel_rules.violations(_nodepool(disruption={
        "consolidationPolicy": "WhenEmpty", "consolidateAfter": "1m",
        "budgets": [{"nodes": "1"}, {"nodes": "150%"}, {"nodes": "1", "schedule": "@daily"}]}))
    assert problems == ["spec.disruption.budgets[1].nodes: must be a count or a percentage",
                        "spec.disruption.budgets[2]: 'schedule' must be set with 'duration'"]


def test_keda_replica_bounds():
    so = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "s"},
          "spec": {"minReplicaCount": 3, "maxReplicaCount": 2}}
    assert cel_rules.violations(so) == ["spec: MinReplicaCount=3 must be less than MaxReplicaCount=2"]


def test_schema_validator_reports_unknown_fields_bad_values_and_unknown_kinds():
    nodepool = _nodepool(requirements=[{"key": "a", "operator": "Near", "values": ["x"]}])
    nodepool["spec"]["template"]["spec"]["nodeClassRef"]["colour"] = "red"
    nodepool["spec"]["disruption"]["budgets"] = [{"nodes": "many"}]
    scaled = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "s"},
              "spec": {"scaleTargetRef": {"name": "d"}, "minReplicas": 1,
                       "triggers": [{"type": "prometheus", "metadata": {"query": "up"}}]}}
    unknown_kind = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    nodepool_errors, scaled_errors, kind_errors = crd_schemas.validate([nodepool, scaled, unknown_kind])
    text = "\n".join(nodepool_errors)
    assert "/spec/template/spec/requirements/0/operator: must be equal to one of the allowed values" in text
    assert "/spec/template/spec/nodeClassRef/colour: unknown field" in text
    assert "/spec/disruption/budgets/0/nodes: must match pattern" in text
    assert scaled_errors == ["/spec/minReplicas: unknown field (not in the CRD schema; the API server would drop it)"]
    assert kind_errors == ["no CRD schema for example.com/v1 Widget (add its package to tests/crds)"]


def test_image_rule():
    # image_rules uses the component's own rule (components.config.registry_host) on full
    # references, tag and registry port included.
    assert registry_host("ghcr.io/acme/sd:1") == "ghcr.io"
    assert registry_host("localhost/sd:1") == "localhost"
    assert registry_host("registry:5000/sd:1") == "registry:5000"
    assert registry_host("stable-diffusion-inference:v1") is None
    assert registry_host("acme/sd:1") is None  # Docker Hub's acme/sd
    objects = [{"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {
        "initContainers": [{"name": "i", "image": "acme/sd:1"}],
        "containers": [{"name": "c", "image": "ghcr.io/acme/sd:1"}]}}}}]
    (problem,) = image_rules.unpullable_images({"node_pool": "karpenter"}, objects)
    assert "initContainers[i]" in problem and "'acme/sd:1' names no registry host" in problem
    assert image_rules.unpullable_images({"node_pool": "existing"}, objects) == []
