"""`AppConfigError` and how pydantic's errors become its lines.

Each line names the config path as the user writes it (`stable-diffusion:app.node_pool.cluster`,
`...loras[1].name`). The path is built from pydantic's structured `loc` by walking the
models' own annotations next to it: a discriminated union's tag and a plain union's member
label are recognised because the union at that point of the type says what its members
are, not by the spelling of the loc item.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Optional, Union, get_args, get_origin

from pydantic import BaseModel, Discriminator, Tag, ValidationError

from .base import CONFIG_KEY, PATTERN_NAMES


class AppConfigError(ValueError):
    """Invalid `stable-diffusion:app` config; the message lists every problem with its path."""


class PathError(ValueError):
    """A rule's error about a part below the model whose validator raises it.

    pydantic reports a model validator's error at the model; `loc` (relative to that model,
    spelled as in the config) says which of its parts is wrong.
    """

    def __init__(self, loc: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.loc = loc
        self.message = message


def unwrap(annotation: Any) -> tuple[Any, list]:
    """(the type without Annotated and Optional, the Annotated metadata met on the way)."""
    metadata: list = []
    while True:
        if get_origin(annotation) is Annotated:
            metadata += annotation.__metadata__
            annotation = annotation.__origin__
        elif is_union(annotation) and type(None) in get_args(annotation):
            members = [a for a in get_args(annotation) if a is not type(None)]
            annotation = members[0] if len(members) == 1 else Union[tuple(members)]
        else:
            return annotation, metadata


def is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def union_members(annotation: Any, discriminator: Any = None) -> tuple[list[tuple[Optional[str], Any]], bool]:
    """A union's members as (tag, type), and whether it is discriminated.

    Tags come from `Tag(...)` on a member (a callable `Discriminator`) or from the literal
    value of the discriminator field (`Field(discriminator="mode")`).
    """
    annotation, metadata = unwrap(annotation)
    field = discriminator
    for item in metadata:
        if isinstance(item, Discriminator) or getattr(item, "discriminator", None) is not None:
            field = item
    if isinstance(field, Discriminator):
        field = field.discriminator
    elif field is not None and not isinstance(field, str):
        field = field.discriminator
    members = []
    for member in get_args(annotation):
        if member is type(None):
            continue
        base, member_meta = unwrap(member)
        tag = next((m.tag for m in member_meta if isinstance(m, Tag)), None)
        if tag is None and isinstance(field, str) and isinstance(base, type) and issubclass(base, BaseModel):
            tag = get_args(base.model_fields[field].annotation)[0]
        members.append((tag, member))
    return members, field is not None


def config_path(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str | int]:
    """pydantic's `loc` -> the path as the config spells it (union tags and labels dropped)."""
    parts: list[str | int] = []
    annotation: Any = root
    discriminator: Any = None
    items = list(loc)
    while items:
        item = items.pop(0)
        base = unwrap(annotation)[0] if annotation is not None else None
        if isinstance(base, type) and issubclass(base, BaseModel) and item in base.model_fields:
            parts.append(item)
            field = base.model_fields[item]
            annotation = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
            discriminator = field.discriminator
            continue
        if annotation is not None and is_union(base):
            members, tagged = union_members(annotation, discriminator)
            discriminator = None
            if tagged:  # a discriminated union's loc names the member's tag
                chosen = [m for tag, m in members if tag == item]
            else:  # a plain union's loc names the member: a model's class name or a scalar's type
                chosen = [m for _, m in members if getattr(unwrap(m)[0], "__name__", None) == item]
            if chosen:
                annotation = chosen[0]
                continue
        origin = get_origin(base)
        if origin is list and isinstance(item, int):
            parts.append(item)
            annotation = get_args(base)[0]
        elif origin is dict:
            parts.append(item)
            annotation = get_args(base)[1]
            if items[:1] == ["[key]"]:  # pydantic's marker: the error is in the key itself
                items.pop(0)
                annotation = None
        else:
            parts.append(item)
            annotation = None
    return parts


def format_path(parts: list[str | int]) -> str:
    text = CONFIG_KEY
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _message(err: dict) -> str:
    ctx = err.get("ctx") or {}
    if err["type"] == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if err["type"] == "string_pattern_mismatch":
        pattern = ctx.get("pattern", "")
        return f"{err['input']!r} is not {PATTERN_NAMES.get(pattern, f'of the form {pattern}')}"
    if err["type"] == "extra_forbidden":
        return "unknown key (check the spelling; see docs/component.md)"
    return err["msg"]


def problems(root: type[BaseModel], error: ValidationError) -> list[str]:
    """One line per problem, `<path>: <message>`, without repeats."""
    lines: list[str] = []
    for err in error.errors(include_url=False):
        parts = config_path(root, tuple(err["loc"]))
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, PathError):
            parts += list(ctx_error.loc)
        line = f"{format_path(parts)}: {_message(err)}"
        if line not in lines:
            lines.append(line)
    return lines


def raise_config_error(root: type[BaseModel], error: ValidationError) -> None:
    lines = problems(root, error)
    raise AppConfigError(
        f"invalid {CONFIG_KEY} ({len(lines)} problem{'s' if len(lines) != 1 else ''}):\n  "
        + "\n  ".join(lines)
    ) from None
