"""The checkpoints a server offers, loaded on first use, least recently used evicted.

The first model is the default and is loaded at start; the others load when a request
(or `POST /sdapi/v1/options`) first selects them. Past `max_loaded` models in memory, the
least recently used one is dropped (never the one being asked for).
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ModelNotFound
from .builtin import is_builtin
from .fast_path import FastPathConfig
from .loading import DeviceConfig, LoadedModel, load_model
from .lora import LoraSpec, load_adapters, take_unet_adapters

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRef:
    """`REPO_OR_DIR[@REVISION]` from `--model`."""

    name: str
    revision: str | None = None

    @classmethod
    def parse(cls, text: str, default_revision: str | None = None) -> "ModelRef":
        name, sep, revision = text.strip().partition("@")
        if sep and not is_builtin(name) and not Path(text).exists():
            return cls(name, revision or None)
        return cls(text.strip(), default_revision)

    @property
    def title(self) -> str:
        return self.name


def model_refs(models: list[str], first_revision: str | None = None) -> list[ModelRef]:
    """`--model` values -> refs; `--revision` applies to the first (the default) model."""
    return [ModelRef.parse(text, first_revision if i == 0 else None) for i, text in enumerate(models)]


class ModelRegistry:
    def __init__(
        self,
        refs: list[ModelRef],
        *,
        cache_dir: Path,
        device: DeviceConfig,
        loras: list[LoraSpec] | None = None,
        max_loaded: int = 1,
        on_load: Callable[[LoadedModel], None] | None = None,
        fast_path: FastPathConfig | None = None,
    ):
        if not refs:
            raise ValueError("at least one model is required")
        self.refs = list(refs)
        self.cache_dir = cache_dir
        self.device = device
        self.lora_specs = list(loras or [])
        self.max_loaded = max(1, max_loaded)
        self._on_load = on_load
        self.fast_path = fast_path
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def titles(self) -> list[str]:
        return [ref.title for ref in self.refs]

    def loaded_names(self) -> list[str]:
        return list(self._loaded)

    def loaded(self, name: str) -> LoadedModel | None:
        """The model if it is in memory now; never loads (safe on the event loop)."""
        return self._loaded.get(name)

    def resolve(self, wanted: str) -> str:
        """A checkpoint as a client names it (title, `title [hash]`, file name) -> its name."""
        wanted = wanted.strip()
        for ref in self.refs:
            short = LoadedModel.hash_of(ref.name)
            if wanted in (ref.name, ref.title, f"{ref.title} [{short}]", Path(ref.name).name, short):
                return ref.name
        raise ModelNotFound(wanted, self.titles)

    def get(self, name: str) -> LoadedModel:
        """The loaded model (loading it now if needed). Safe to call from any thread."""
        name = self.resolve(name)
        with self._lock:
            model = self._loaded.get(name)
            if model is not None:
                self._loaded.move_to_end(name)
                return model
            while len(self._loaded) >= self.max_loaded:
                evicted, _ = self._loaded.popitem(last=False)
                log.info("unloading %s (more than %d models loaded)", evicted, self.max_loaded)
                _release_memory()
            ref = next(r for r in self.refs if r.name == name)
            model = load_model(
                ref.name, cache_dir=self.cache_dir, revision=ref.revision, device=self.device, fast_path=self.fast_path
            )
            model.loras = self._load_loras(model)
            if self.lora_specs:
                # Also when none loaded: a load that failed halfway (an SD 1.5 adapter on
                # SDXL) leaves its layers in the UNet, and the compiled graph must not hold them.
                model.unet_adapters = take_unet_adapters(model.text2img, model.loras)
            self._loaded[name] = model
            if self._on_load is not None:
                self._on_load(model)
            return model

    def _load_loras(self, model: LoadedModel) -> dict[str, LoraSpec]:
        loaded: dict[str, LoraSpec] = {}
        for spec in self.lora_specs:
            try:
                loaded |= load_adapters(model.text2img, [spec], self.cache_dir)
            except Exception as error:  # e.g. an SD 1.5 adapter on an SDXL checkpoint
                log.warning("LoRA %s does not fit %s: %s", spec.name, model.name, type(error).__name__)
        if self.lora_specs and not loaded:
            log.warning("no LoRA adapter fits %s", model.name)
        return loaded


def _release_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
