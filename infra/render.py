"""Render a stack's Kubernetes objects to YAML without a Pulumi CLI or a cluster.

    python -m infra.render --stack dev --out out/dev
    python -m infra.render --config path/to/Pulumi.other.yaml --out DIR

Runs the real program (infra/program.py, the same `main()` that `pulumi up` runs) with
the stack's config under a recording mock engine, then writes one file per Kubernetes
object: `NN-<kind>-<name>.yaml`, NN ordering them for `kubectl apply -f DIR` (namespace
first, custom resources last). Secrets are redacted (`<redacted>`): every Pulumi secret
and every value of a Secret's data/stringData. `secure:` config values cannot be
decrypted here and render as redacted secrets. Built images render with their tag (the
digest exists only after a real build). Non-Kubernetes resources (GKE node pool, image
build, random password) are listed on stdout, not written.

Exit status: 0 on success; 1 with the validation message on stderr, and nothing written,
when the config is invalid; 2 for usage errors (missing stack file).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Optional

import pulumi
import yaml

from components import AppConfigError
from infra import mock_engine
from infra.program import main as program_main

REPO_ROOT = Path(__file__).resolve().parent.parent
_OURS = re.compile(r"^\d\d-[a-z0-9]+-[a-z0-9.-]+\.yaml$")
_ORDER = [
    "Namespace", "ServiceAccount", "Secret", "PersistentVolumeClaim", "Service",
    "Deployment", "PodDisruptionBudget", "Ingress", "NetworkPolicy",
]


def _rank(kind: str, builtin: bool) -> int:
    if kind in _ORDER:
        return _ORDER.index(kind) * 10
    return 85 if builtin else 95


def file_name(obj: dict, builtin: bool) -> str:
    kind = obj["kind"]
    name = obj.get("metadata", {}).get("name", "unnamed")
    return f"{_rank(kind, builtin):02d}-{kind.lower()}-{name}.yaml"


_FIRST = ("apiVersion", "kind", "metadata", "spec")


def ordered(obj: dict) -> dict:
    """apiVersion, kind, metadata, spec first; everything below sorted: the same
    program and config always give byte-identical files (clean GitOps diffs)."""

    def deep(value):
        if isinstance(value, dict):
            return {k: deep(value[k]) for k in sorted(value)}
        if isinstance(value, list):
            return [deep(v) for v in value]
        return value

    head = {k: deep(obj[k]) for k in _FIRST if k in obj}
    return {**head, **{k: deep(obj[k]) for k in sorted(obj) if k not in head}}


def render(config: dict[str, str], secret_keys: list[str], stack: str, out: Path) -> list[Path]:
    """Run the program, then write its objects to `out`. Raises AppConfigError first
    (before anything is written) when the config is invalid."""

    # The program validates the config before declaring anything; the output directory
    # is only touched once the whole program has run.
    result = mock_engine.run(program_main, config, secret_keys, stack=stack)

    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if _OURS.match(old.name):
            old.unlink()
    written = []
    for record in result.resources:
        if not record.is_kubernetes_object:
            continue
        obj = mock_engine.manifest(record.inputs)
        builtin = "." not in obj["apiVersion"].split("/")[0] or obj["apiVersion"].split("/")[0].endswith(".k8s.io")
        path = out / file_name(obj, builtin)
        path.write_text(yaml.safe_dump(ordered(obj), sort_keys=False))
        written.append(path)
    others = [r for r in result.resources if not r.is_kubernetes_object and r.custom
              and not r.type.startswith("pulumi:providers:")]
    print(f"rendered {len(written)} Kubernetes objects to {out}")
    for record in others:
        print(f"  (not Kubernetes, not written) {record.type} {record.name}")
    return written


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.render", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="stack name: reads Pulumi.<stack>.yaml from the project directory")
    source.add_argument("--config", type=Path, help="a stack config file to read instead")
    parser.add_argument("--out", type=Path, required=True, help="directory to write the YAML files to")
    parser.add_argument("--project-dir", type=Path, default=REPO_ROOT, help="where Pulumi.yaml lives")
    args = parser.parse_args(argv)

    path = args.config or args.project_dir / f"Pulumi.{args.stack}.yaml"
    stack = args.stack or re.sub(r"^Pulumi\.|\.yaml$", "", path.name)
    if not path.is_file():
        print(f"error: no stack config file {path}", file=sys.stderr)
        return 2
    config, secret_keys = mock_engine.stack_config(path)
    try:
        render(config, secret_keys, stack, args.out)
    except (AppConfigError, pulumi.RunError, pulumi.ConfigMissingError) as error:
        print(str(error), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
