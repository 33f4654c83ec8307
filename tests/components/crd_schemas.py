"""Custom objects against their upstream CRD schemas, through tests/crds/validate.mjs.

The schemas come from the pinned npm packages of tests/crds/package.json (validators
generated from the upstream API types), installed by `make install` into
tests/crds/node_modules; nothing of them is copied into this repository. One node process
checks every object. Unknown fields are errors, and so is a custom kind with no schema.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

CRDS = Path(__file__).resolve().parents[1] / "crds"
SCRIPT = CRDS / "validate.mjs"


def is_custom(obj: dict) -> bool:
    """A custom resource: its API group has a dot and is not a Kubernetes one (*.k8s.io)."""
    group = obj["apiVersion"].rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def _installed() -> Path:
    """tests/crds with its node_modules. `make test` sets CRD_SCHEMAS, which makes a
    missing install a failure instead of a skip."""
    required = bool(os.environ.get("CRD_SCHEMAS"))
    node = shutil.which("node")
    missing = None if node else "node is not on PATH"
    if not (CRDS / "node_modules" / "@kubernetes-models").is_dir():
        missing = "tests/crds/node_modules is missing (make install runs `npm ci` there)"
    if missing:
        if required:
            pytest.fail(missing)
        pytest.skip(missing)
    return CRDS


def validate(objects: list[dict]) -> list[list[str]]:
    """One list of schema errors per object (empty: valid)."""
    _installed()
    proc = subprocess.run(["node", str(SCRIPT)], input=json.dumps(objects), capture_output=True,
                          text=True, timeout=120, cwd=CRDS)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(objects)
    return results
