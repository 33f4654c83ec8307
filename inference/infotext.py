"""A1111 "infotext": the generation parameters as one text, stored in the PNG chunk.

Format (as A1111 writes it, and `png-info` parses it back):

    <prompt>
    Negative prompt: <negative prompt>
    Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x512, Model: x
"""

from __future__ import annotations

import json
import re
from typing import Any

_PAIR = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def _quote(value: Any) -> str:
    text = str(value)
    if "," in text or "\n" in text or ":" in text or text.startswith('"'):
        return json.dumps(text, ensure_ascii=False)
    return text


def format_infotext(prompt: str, negative_prompt: str, fields: dict[str, Any]) -> str:
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in fields.items() if v is not None and v != ""))
    return "\n".join(lines)


def parse_infotext(text: str) -> dict[str, Any]:
    """Parse an infotext back into {"Prompt", "Negative prompt", <field>: value}.

    Numbers come back as numbers; `Size: WxH` also yields `Size-1`/`Size-2` as A1111 does.
    """
    *head, last = text.strip().split("\n")
    if len(_PAIR.findall(last)) < 3:  # not a parameters line: everything is prompt
        head.append(last)
        last = ""
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for line in head:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    result: dict[str, Any] = {"Prompt": "\n".join(prompt_lines), "Negative prompt": "\n".join(negative_lines)}
    for key, value in _PAIR.findall(last):
        value = value.strip()
        if value.startswith('"') and value.endswith('"'):
            value = json.loads(value)
        result[key.strip()] = _number(value)
        size = re.fullmatch(r"(\d+)x(\d+)", str(value))
        if size and key.strip() == "Size":
            result["Size-1"], result["Size-2"] = int(size[1]), int(size[2])
    return result


def _number(value: str) -> Any:
    for convert in (int, float):
        try:
            return convert(value)
        except (TypeError, ValueError):
            pass
    return value
