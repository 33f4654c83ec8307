"""The import graph of the repository's Python packages, read with `ast` (nothing is
imported or run), against the layering in docs/architecture.md:

    entry (server, __main__) -> api -> service -> serving -> engine -> base
                                                   config -> engine -> base

A module imports its own layer or the ones to its right, never back. `base` is
errors, metrics, imaging, infotext and the package itself: they import no layer.
Besides:

- only `api/` (and the entry points) import the HTTP stack: fastapi, starlette, uvicorn;
- `serving/` never imports torch (out-of-memory handling is `engine/oom.py`'s);
- no import cycle, and no function-local import of a package module that could not be
  at the top of the file because of a cycle (an import "hidden" to dodge one); local
  imports of third-party packages (lazy torch/diffusers) are fine;
- `components/` never imports torch or diffusers; `inference/` never imports pulumi.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Which layers each layer may import (its own included).
ALLOWED: dict[str, frozenset[str]] = {
    "entry": frozenset({"entry", "api", "service", "serving", "engine", "config", "base"}),
    "api": frozenset({"api", "service", "serving", "engine", "config", "base"}),
    "service": frozenset({"service", "serving", "engine", "config", "base"}),
    "config": frozenset({"config", "engine", "base"}),
    "serving": frozenset({"serving", "engine", "base"}),
    "engine": frozenset({"engine", "base"}),
    "base": frozenset({"base"}),
}
HTTP_STACK = ("fastapi", "starlette", "uvicorn")
HTTP_LAYERS = frozenset({"entry", "api"})


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # an absolute module name
    line: int
    local: bool  # inside a function


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path, known: set[str]) -> list[Import]:
    """Every import in a file, relative ones resolved; `from pkg import sub` also names
    `pkg.sub` when that is a module of the tree."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(name, alias.name, child.lineno, local) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.append(Import(name, target, child.lineno, local))
                for alias in child.names:
                    if f"{target}.{alias.name}" in known:
                        found.append(Import(name, f"{target}.{alias.name}", child.lineno, local))
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), False)
    return found


def import_graph(root: Path, package: str) -> list[Import]:
    files = sorted((root / package).rglob("*.py"))
    known = {module_name(path, root) for path in files}
    return [imp for path in files for imp in imports_of(path, root, known)]


def layer_of(module: str) -> str | None:
    """The layer of a module of the `inference` package; None outside it."""
    parts = module.split(".")
    if parts[0] != "inference":
        return None
    if len(parts) == 1:
        return "base"
    top = parts[1]
    if top in ("api", "service", "serving", "engine", "config"):
        return top
    if top in ("server", "__main__"):
        return "entry"
    return "base"


def _is(target: str, *roots: str) -> bool:
    return any(target == root or target.startswith(root + ".") for root in roots)


def layering_violations(graph: list[Import]) -> list[str]:
    problems = []
    for imp in graph:
        where = f"{imp.source}:{imp.line} imports {imp.target}"
        source, target = layer_of(imp.source), layer_of(imp.target)
        if source is None:
            continue
        if target is not None and target not in ALLOWED[source]:
            problems.append(f"{where}: the {source} layer must not import the {target} layer")
        if source not in HTTP_LAYERS and _is(imp.target, *HTTP_STACK):
            problems.append(f"{where}: only api/ speaks HTTP")
        if source == "serving" and _is(imp.target, "torch"):
            problems.append(f"{where}: serving/ must not import torch")
        if _is(imp.target, "pulumi", "pulumi_kubernetes"):
            problems.append(f"{where}: inference/ never imports pulumi")
    return problems


def cycle_violations(graph: list[Import], package: str) -> list[str]:
    """Cycles among top-level imports, and local imports that would close one."""
    top: dict[str, set[str]] = {}
    for imp in graph:
        if not imp.local and _is(imp.target, package):
            top.setdefault(imp.source, set()).add(imp.target)

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            module = stack.pop()
            if module == goal:
                return True
            if module not in seen:
                seen.add(module)
                stack.extend(top.get(module, ()))
        return False

    problems = []
    for imp in graph:
        if not _is(imp.target, package) or imp.target == imp.source:
            continue
        if reaches(imp.target, imp.source):
            kind = "a function-local import that dodges an import cycle" if imp.local else "an import cycle"
            problems.append(f"{imp.source}:{imp.line} imports {imp.target}: {kind}")
    return problems


def component_violations(graph: list[Import]) -> list[str]:
    return [
        f"{imp.source}:{imp.line} imports {imp.target}: components/ never imports torch or diffusers"
        for imp in graph
        if _is(imp.target, "torch", "diffusers")
    ]


# -- the repository ------------------------------------------------------------------


@pytest.fixture(scope="module")
def inference_graph() -> list[Import]:
    graph = import_graph(ROOT, "inference")
    assert len({imp.source for imp in graph}) > 20, "the walk found the package's modules"
    return graph


def test_inference_layers_import_only_downward(inference_graph):
    assert layering_violations(inference_graph) == []


def test_inference_has_no_import_cycle_and_no_import_hidden_from_one(inference_graph):
    assert cycle_violations(inference_graph, "inference") == []


def test_components_never_import_torch_or_diffusers():
    graph = import_graph(ROOT, "components")
    assert graph, "the walk found components/"
    assert component_violations(graph) == []


# -- the checker itself, on a made-up package ----------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_the_checker_finds_each_kind_of_violation(tmp_path):
    _write(
        tmp_path,
        {
            "inference/__init__.py": "",
            "inference/errors.py": "",
            "inference/api/__init__.py": "",
            "inference/api/routes.py": "from fastapi import APIRouter\nfrom ..service import work\n",
            "inference/service/__init__.py": "",
            "inference/service/work.py": """\
                from starlette.requests import Request
                from ..errors import *

                def later():
                    from ..api import routes  # hidden: api imports this module
                """,
            "inference/serving/__init__.py": "",
            "inference/serving/queue.py": "def oom():\n    import torch\n",
            "inference/engine/__init__.py": "from ..serving import queue\nimport pulumi\n",
        },
    )
    graph = import_graph(tmp_path, "inference")
    problems = "\n".join(layering_violations(graph) + cycle_violations(graph, "inference"))
    assert "inference.service.work:1 imports starlette.requests: only api/ speaks HTTP" in problems
    assert "inference.service.work:5 imports inference.api: the service layer must not import the api layer" in problems
    assert "inference.service.work:5 imports inference.api.routes: a function-local import that dodges" in problems
    assert "inference.serving.queue:2 imports torch: serving/ must not import torch" in problems
    assert "the engine layer must not import the serving layer" in problems
    assert "inference.engine:2 imports pulumi: inference/ never imports pulumi" in problems
    assert "inference.api.routes:1 imports fastapi" not in problems, "api/ may speak HTTP"


def test_a_lazy_import_without_a_cycle_is_allowed(tmp_path):
    _write(
        tmp_path,
        {
            "inference/__init__.py": "",
            "inference/__main__.py": "def main():\n    from .server import serve\n",
            "inference/server.py": "",
            "inference/engine/__init__.py": "",
            "inference/engine/run.py": "def run():\n    import torch\n",
        },
    )
    graph = import_graph(tmp_path, "inference")
    assert layering_violations(graph) == [] and cycle_violations(graph, "inference") == []
    assert component_violations(graph) == ["inference.engine.run:2 imports torch: components/ never imports torch or diffusers"]
