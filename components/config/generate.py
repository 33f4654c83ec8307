"""Generate, from the config models, what must say the same as they do:

- `components/app_args.py`: the TypedDicts Pulumi's schema inference reads for the
  multi-language package (provider/). The analyzer reads real classes and the docstrings
  under their keys from the module's source, so they are written out, not built at import.
- docs/component.md's input reference table (path, type, default, description), between
  the `generated input reference` markers.

    python -m components.config.generate          # rewrite both
    python -m components.config.generate --check  # exit 1 when either is stale

tests/components/test_package.py fails when a file differs from what this writes.
"""

from __future__ import annotations

import argparse
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .app import AppConfig
from .base import SchemaType
from .errors import is_union, unwrap, union_members

ROOT = Path(__file__).resolve().parents[2]
APP_ARGS = ROOT / "components" / "app_args.py"
DOCS = ROOT / "docs" / "component.md"
BEGIN = "<!-- BEGIN generated input reference (python -m components.config.generate) -->"
END = "<!-- END generated input reference -->"


# --- the shapes: each model or union of models, as one object type ------------------------


@dataclass
class Key:
    name: str
    info: FieldInfo  # the first member's field (its type and description stand for all)
    required: bool
    prefix: str = ""  # "[gke] " for a key of some members of a tag-prefixed union
    required_in: list[str] = field(default_factory=list)  # the members that require it
    literals: list = field(default_factory=list)  # every member's literal values (`mode`)

    @property
    def annotation(self) -> Any:
        info = self.info
        return typing.Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation

    @property
    def description(self) -> str:
        text = self.prefix + (self.info.description or "").strip()
        default = default_text(self.info)
        if default is None or default in ("[]", "{}", '""'):  # empty: nothing worth a sentence
            return text
        return f"{text} Default: {default}."


@dataclass
class Shape:
    name: str
    description: str
    keys: dict[str, Key] = field(default_factory=dict)


def _marker(metadata: list) -> Optional[SchemaType]:
    return next((m for m in metadata if isinstance(m, SchemaType)), None)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _member_models(annotation: Any, discriminator: Any = None) -> list[tuple[Optional[str], type[BaseModel]]]:
    """The models a field can hold (a model, or the model members of a union), with their tags."""
    base, _ = unwrap(annotation)
    if _is_model(base):
        return [(None, base)]
    if is_union(base):
        members, _ = union_members(annotation, discriminator)
        return [(tag, unwrap(m)[0]) for tag, m in members if _is_model(unwrap(m)[0])]
    return []


def shape_of(annotation: Any, discriminator: Any = None) -> Optional[Shape]:
    """The object type of an annotation (None for a scalar, list or map)."""
    base, metadata = unwrap(annotation)
    models = _member_models(annotation, discriminator)
    if not models:
        return None
    marker = _marker(metadata)
    if len(models) == 1 and marker is None:
        model = models[0][1]
        name = model.model_config.get("title") or model.__name__
        return Shape(name, (model.__doc__ or "").strip(), _keys(models, prefix=False))
    assert marker is not None, f"{annotation}: a union needs a SchemaType marker (its schema name)"
    return Shape(marker.name, marker.description, _keys(models, marker.tag_prefix))


def _keys(models: list[tuple[Optional[str], type[BaseModel]]], prefix: bool) -> dict[str, Key]:
    keys: dict[str, Key] = {}
    owners: dict[str, list[str]] = {}
    for tag, model in models:
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name}: no docstring (its description)"
            owners.setdefault(name, []).append(tag or "")
            key = keys.setdefault(name, Key(name, info, True))
            key.required = key.required and info.is_required()
            if info.is_required():
                key.required_in.append(tag or "")
            if typing.get_origin(info.annotation) is Literal:
                key.literals += [v for v in typing.get_args(info.annotation) if v not in key.literals]
    for name, key in keys.items():
        if len(owners[name]) < len(models):
            key.required = False
            if prefix:
                key.prefix = f"[{'/'.join(owners[name])}] "
    return keys


def default_text(info: FieldInfo) -> Optional[str]:
    """A field's default as the docs write it; None when there is none worth writing."""
    if info.is_required():
        return None
    value = info.default
    if value is None or isinstance(value, BaseModel):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return f"[{', '.join(map(str, value))}]"
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return '""' if value == "" else str(value)


def _args_type(annotation: Any, discriminator: Any, shapes: dict[str, Shape], order: list[str]) -> str:
    """The TypedDict annotation of a field (NotRequired added by the caller)."""
    shape = shape_of(annotation, discriminator)
    if shape is not None:
        _collect(shape, shapes, order)
        return shape.name
    base, _ = unwrap(annotation)
    origin = typing.get_origin(base)
    if origin is list:
        return f"list[{_args_type(typing.get_args(base)[0], None, shapes, order)}]"
    if origin is dict:
        return f"dict[str, {_args_type(typing.get_args(base)[1], None, shapes, order)}]"
    if origin is Literal:
        return type(typing.get_args(base)[0]).__name__
    if base in (str, int, float, bool):
        return base.__name__
    raise TypeError(f"no schema type for {annotation!r}")


def _collect(shape: Shape, shapes: dict[str, Shape], order: list[str]) -> None:
    if shape.name in shapes:
        return
    shapes[shape.name] = shape
    for key in shape.keys.values():
        _args_type(key.annotation, key.info.discriminator, shapes, order)
    order.append(shape.name)  # after the types it refers to: the module has no forward refs


# --- components/app_args.py -----------------------------------------------------------------

ARGS_HEADER = '''"""The package schema's types for the component's `app` input. GENERATED from the models
in components/config/ by `python -m components.config.generate`: do not edit by hand.

Pulumi's schema inference (provider/) reads these TypedDicts and the docstring under each
key. They describe shapes only: every value is validated by the pydantic models
(`parse_app_config`). Schema inference accepts no unions, so each union of the config is
one object with the keys of all its shapes (pydantic refuses keys of two shapes at once).

No `from __future__ import annotations`: the analyzer reads the annotations as objects.
"""

from typing import NotRequired, TypedDict
'''


def _docstring(text: str, indent: str) -> str:
    assert '"""' not in text and "\\\\" not in text and not text.endswith('"'), text
    return f'{indent}"""{text}"""\n'


def app_args_source() -> str:
    shapes: dict[str, Shape] = {}
    order: list[str] = []
    root = shape_of(AppConfig)
    _collect(root, shapes, order)
    out = [ARGS_HEADER]
    for name in order:
        shape = shapes[name]
        out.append(f"\n\nclass {name}(TypedDict):\n")
        out.append(_docstring(shape.description, "    ") + "\n")
        for key in shape.keys.values():
            kind = _args_type(key.annotation, key.info.discriminator, shapes, order)
            out.append(f"    {key.name}: {kind if key.required else f'NotRequired[{kind}]'}\n")
            out.append(_docstring(key.description, "    "))
    return "".join(out)


# --- docs/component.md -----------------------------------------------------------------------


def _bounds(info_metadata: list) -> str:
    low = next((m.ge for m in info_metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in info_metadata if isinstance(m, annotated_types.Le)), None)
    if low is not None and high is not None:
        return f" {low}–{high}"
    return f" ≥ {low}" if low is not None else ""


def _doc_type(annotation: Any, metadata: list, discriminator: Any = None) -> str:
    base, more = unwrap(annotation)
    metadata = list(metadata) + list(more)
    if _member_models(annotation, discriminator):
        scalars = [m for _, m in union_members(annotation)[0] if not _is_model(unwrap(m)[0])] if is_union(base) else []
        return "string or object" if scalars else "object"
    origin = typing.get_origin(base)
    if origin is list:
        return f"list of {_doc_type(typing.get_args(base)[0], [])}"
    if origin is dict:
        return f"map of string to {_doc_type(typing.get_args(base)[1], [])}"
    if origin is Literal:
        return " \\| ".join(f"`{value}`" for value in typing.get_args(base))
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return names.get(base, str(base)) + (_bounds(metadata) if base is int else "")


def _rows(shape: Shape, path: str, rows: list[str]) -> None:
    for key in shape.keys.values():
        where = f"{path}{key.name}"
        info = key.info
        if key.required:
            default = "**required**"
        elif key.required_in and key.prefix:
            default = f"**required** ({', '.join(key.required_in)})"
        else:
            text = default_text(info)
            default = f"`{text}`" if text is not None else "–"
        description = (key.prefix + (info.description or "").strip()).replace("|", "\\|").replace("\n", " ")
        kind = _doc_type(info.annotation, info.metadata, info.discriminator)
        if len(key.literals) > 1:
            kind = " \\| ".join(f"`{value}`" for value in key.literals)
        rows.append(f"| `{where}` | {kind} | {default} | {description} |")
        base, _ = unwrap(info.annotation)
        inner = shape_of(key.annotation, info.discriminator)
        if inner is not None:
            _rows(inner, f"{where}.", rows)
            continue
        origin = typing.get_origin(base)
        if origin in (list, dict):
            item = typing.get_args(base)[0 if origin is list else 1]
            inner = shape_of(item)
            if inner is not None:
                _rows(inner, f"{where}[]." if origin is list else f"{where}.<name>.", rows)


def reference_table() -> str:
    rows = ["| path | type | default | description |", "|---|---|---|---|"]
    _rows(shape_of(AppConfig), "", rows)
    return "\n".join(rows)


def docs_with_table(text: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + reference_table() + "\n" + text[end:]


# --- command line -------------------------------------------------------------------------------


def expected() -> dict[Path, str]:
    return {APP_ARGS: app_args_source(), DOCS: docs_with_table(DOCS.read_text())}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale")
    args = parser.parse_args(argv)
    stale = [path for path, text in expected().items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run python -m components.config.generate", file=sys.stderr)
        return 1 if stale else 0
    for path, text in expected().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
