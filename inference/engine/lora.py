"""LoRA adapters: loaded once at start, activated per request by A1111's prompt syntax.

`--lora REPO_OR_DIR[@REVISION][:NAME][:WEIGHT]` loads an adapter under NAME (default: the last
path component) with a default WEIGHT (1.0); a Hub repo may be pinned to a REVISION (branch,
tag or commit sha), which the init container's `download` and the server both fetch.
Adapters are inactive unless a prompt asks for one with `<lora:NAME:WEIGHT>`; the tag is
removed from the text the encoder sees and the active set becomes part of the batch key, so
requests with different adapters never share a pipeline call. The UNet's part of every
adapter is merged into its weights per batch (`lora_merge.py`), so batches with adapters
run the same compiled graphs as those without; the text encoders keep diffusers' adapter layers.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .hub import split_revision
from .lora_merge import UnetAdapters, UnsupportedAdapterError

log = logging.getLogger(__name__)

_TAG = re.compile(r"<lora:([^:>]+)((?::[^:>]*)*)>", re.IGNORECASE)

# (name, text encoder weight, UNet weight), sorted by name: hashable, so it can be part
# of a batch key. AUTOMATIC1111's `<lora:NAME:TE[:UNET[:DYN]]>` (or `te=`, `unet=`,
# `dyn=`) weighs the two apart; one weight is both.
ActiveAdapters = tuple[tuple[str, float, float], ...]


class LoraSpecError(ValueError):
    pass


@dataclass(frozen=True)
class LoraSpec:
    source: str
    name: str
    weight: float = 1.0
    revision: str | None = None  # a Hub repo's branch, tag or commit sha; None: its default branch

    @classmethod
    def parse(cls, text: str) -> "LoraSpec":
        """`REPO_OR_DIR[@REVISION][:NAME][:WEIGHT]`; a repo id, path or git revision never contains a colon here."""
        parts = text.strip().split(":")
        if not parts[0]:
            raise LoraSpecError(f"--lora {text!r}: the adapter source is empty")
        if len(parts) > 3:
            raise LoraSpecError(f"--lora {text!r}: expected REPO_OR_DIR[@REVISION][:NAME][:WEIGHT]")
        try:
            source, revision = split_revision(parts[0])
        except ValueError as error:
            raise LoraSpecError(f"--lora {text!r}: {error}") from None
        name = Path(source.rstrip("/")).name
        if name.endswith(".safetensors"):
            name = name[: -len(".safetensors")]
        weight = 1.0
        rest = parts[1:]
        if rest and _is_number(rest[-1]):
            weight = float(rest.pop())
        if rest:
            name = rest[0] or name
        if rest[1:]:
            raise LoraSpecError(f"--lora {text!r}: WEIGHT must be a number")
        if not re.fullmatch(r"[\w.\-]+", name):
            raise LoraSpecError(f"--lora {text!r}: adapter name {name!r} may only use letters, digits, '.', '-', '_'")
        return cls(source=source, name=name, weight=weight, revision=revision)

    @property
    def pinned_source(self) -> str:
        """`REPO[@REVISION]`, as given (for logs and listings)."""
        return f"{self.source}@{self.revision}" if self.revision else self.source


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class UnknownLoraError(ValueError):
    def __init__(self, name: str, available: list[str]):
        listed = ", ".join(available) if available else "none are loaded (start the server with --lora)"
        super().__init__(f"unknown LoRA {name!r} in <lora:...>; available: {listed}")
        self.name = name


def _tag_weights(name: str, parameters: str, default: float) -> tuple[float, float]:
    """(text encoder, UNet) weights of `<lora:NAME` + `parameters` + `>`, as AUTOMATIC1111
    reads them: positional TE, UNET, DYN or named `te=`, `unet=`, `dyn=`; UNET defaults
    to TE, TE to the adapter's default weight. DYN (a LyCORIS rank limit) is accepted and
    has no effect on a LoRA."""
    tag = f"<lora:{name}{parameters}>"
    positional: list[str] = []
    named: dict[str, str] = {}
    for item in parameters.split(":")[1:]:
        key, equals, value = item.partition("=")
        if equals:
            named[key.strip().lower()] = value.strip()
        else:
            positional.append(item.strip())
    unknown = sorted(set(named) - {"te", "unet", "dyn"})
    if unknown:
        raise ValueError(f"{tag}: unknown parameter {', '.join(unknown)}; a LoRA tag takes te=, unet= and dyn=")
    if len(positional) > 3:
        raise ValueError(f"{tag}: expected <lora:NAME:TE_WEIGHT:UNET_WEIGHT:DYN> at most")
    values = dict(zip(("te", "unet", "dyn"), positional, strict=False)) | named
    for key in ("te", "unet"):
        if values.get(key, "") and not _is_finite_number(values[key]):
            label = f"{key} weight" if key in named or key == "unet" else "weight"
            raise ValueError(f"{tag}: the {label} must be a number")
    if values.get("dyn", "") and not values["dyn"].isdigit():
        raise ValueError(f"{tag}: dyn must be a whole number")
    te = float(values["te"]) if values.get("te") else default
    unet = float(values["unet"]) if values.get("unet") else te
    return te, unet


def _is_finite_number(text: str) -> bool:
    return _is_number(text) and math.isfinite(float(text))


def extract_adapters(prompt: str, available: dict[str, LoraSpec]) -> tuple[str, ActiveAdapters]:
    """Remove `<lora:NAME[:WEIGHT...]>` tags; return the clean prompt and the active adapters."""
    wanted: dict[str, tuple[float, float]] = {}
    for match in _TAG.finditer(prompt):
        name = match.group(1).strip()
        if name not in available:
            raise UnknownLoraError(name, sorted(available))
        wanted[name] = _tag_weights(name, match.group(2), available[name].weight)
    clean = re.sub(r"\s+,", ",", _TAG.sub("", prompt))  # "a <lora:x>, b" -> "a, b"
    clean = re.sub(r"[ \t]{2,}", " ", clean).strip(" ,")
    return clean, tuple((name, te, unet) for name, (te, unet) in sorted(wanted.items()))


# What diffusers' `load_lora_weights` takes from a repo when given no file name: a
# `.safetensors` file (else a `.bin`), not a training checkpoint's, scheduler's or
# optimizer's, preferring the standard `pytorch_lora_weights` name.
_LORA_STANDARD_NAME = "pytorch_lora_weights"
_NOT_LORA_WEIGHTS = ("scheduler", "optimizer", "checkpoint")


def lora_weight_file(repo_files: list[str], repo: str) -> str:
    """The one file of a LoRA repo that is loaded (and so the only one prefetched)."""
    for extension in (".safetensors", ".bin"):
        candidates = sorted(
            name for name in repo_files
            if name.endswith(extension) and not any(word in name for word in _NOT_LORA_WEIGHTS)
        )
        standard = [name for name in candidates if name.endswith(_LORA_STANDARD_NAME + extension)]
        chosen = (standard or candidates)[:1]
        if chosen:
            if len(standard or candidates) > 1:
                log.info("LoRA repo %s has several weight files; using %s", repo, chosen[0])
            return chosen[0]
    raise FileNotFoundError(f"LoRA repo {repo!r} has no .safetensors or .bin weight file")


def fetch_adapter(spec: LoraSpec, cache_dir: Path) -> Path:
    """The adapter's weights on local disk: a local file or directory as is; for a Hub
    repo its one weight file (`lora_weight_file`) at the spec's revision, fetched into the cache.

    The init container's `download` and the server's `load_adapters` both call this, so
    the server loads exactly the prefetched file, with the Hub unreachable too.
    """
    source = Path(spec.source).expanduser()
    if source.exists():
        if spec.revision:  # parse refuses this; a directory that appeared since would be read unpinned
            raise LoraSpecError(
                f"--lora {spec.pinned_source!r}: {spec.source!r} is a local path; only a Hub repo takes a revision"
            )
        return source.resolve()
    from .hub import fetch_chosen_file

    return fetch_chosen_file(
        spec.source, cache_dir, "LoRA", lambda files: lora_weight_file(files, spec.source), revision=spec.revision
    )


def load_adapters(pipeline: Any, specs: list[LoraSpec], cache_dir: Path) -> dict[str, LoraSpec]:
    """Load every adapter onto `pipeline`, inactive. Returns those that loaded."""
    loaded: dict[str, LoraSpec] = {}
    for spec in specs:
        source = fetch_adapter(spec, cache_dir)
        options: dict[str, Any] = {"adapter_name": spec.name}
        if source.is_file():
            location = str(source.parent)
            options["weight_name"] = source.name
        else:
            location = str(source)
        pipeline.load_lora_weights(location, **options)
        loaded[spec.name] = spec
        log.info("loaded LoRA %s from %s", spec.name, spec.pinned_source)
    if loaded:
        pipeline.disable_lora()
    return loaded


def take_unet_adapters(pipeline: Any, loaded: dict[str, LoraSpec]) -> UnetAdapters:
    """Move the adapters' UNet layers out of `pipeline.unet` (`lora_merge.py`) once all
    are loaded. An adapter that cannot be merged is deleted from the pipeline and from
    `loaded`, with a warning naming it and why."""
    while True:
        try:
            return UnetAdapters.take_from(pipeline.unet, only=set(loaded))
        except UnsupportedAdapterError as error:
            name = error.adapter
            log.warning("%s; LoRA %s is not loaded", error, name)
            pipeline.delete_adapters(name)
            loaded.pop(name, None)


def _text_encoders_with_adapters(pipeline: Any) -> list[Any]:
    encoders = (getattr(pipeline, name, None) for name in ("text_encoder", "text_encoder_2"))
    return [encoder for encoder in encoders if encoder is not None and getattr(encoder, "peft_config", None)]


def activate(
    pipeline: Any, adapters: ActiveAdapters, loaded: dict[str, LoraSpec], unet_adapters: UnetAdapters | None = None
) -> None:
    """Make exactly `adapters` active for the next call: merged into the UNet's weights,
    switched on in the text encoders that hold them."""
    if not loaded:
        return
    if unet_adapters is not None:
        unet_adapters.apply(tuple((name, unet) for name, _, unet in adapters))
    from diffusers.loaders.lora_base import (
        disable_lora_for_text_encoder,
        enable_lora_for_text_encoder,
        set_adapters_for_text_encoder,
    )

    for encoder in _text_encoders_with_adapters(pipeline):
        held = [(name, te) for name, te, _ in adapters if name in encoder.peft_config and te != 0]
        if held:
            enable_lora_for_text_encoder(encoder)
            set_adapters_for_text_encoder([name for name, _ in held], encoder, [weight for _, weight in held])
        else:
            disable_lora_for_text_encoder(encoder)
