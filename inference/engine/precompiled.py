"""Compiled forwards kept on disk per warmed shape, so that a restart does not trace again.

With inductor's caches on the volume (`compile_cache.py`), a restarted pod or a second
replica no longer generates kernels, but dynamo still traces the model once per shape:
on the CPU here, 10 to 13 s for SD 1.5's UNet at each of its four warm-up shapes
(`python -m bench.restart_cpu`), which alone breaks the 30 s restart target. PyTorch's
ahead-of-time compile (`torch.compile(...).aot_compile`, experimental in torch 2.11 to
2.13) packages what dynamo and inductor produced for one input signature into a file
that loads without tracing.

So each signature a gated forward compiles during warm-up (`compiled_shapes.py`) is
compiled that way and saved as `<compile cache>/precompiled/<module>-<digest>.aot`; at
the next start the same signature loads the file instead. The digest covers what the
artifact depends on beyond the directory's own key (torch, GPU, settings): the module's
architecture (its config, dtype and attention processors) and the input signature. The
compiled function takes the module as an argument, so its weights are inputs and another
checkpoint of the same architecture uses the same file.

Guards. Dynamo checks a compiled graph's assumptions (guards) before each call. Some
cannot be saved (object identities, such as the attention processor's `__call__` that
diffusers inspects); `serializable_guards` drops those and keeps the tensor, shape and
constant guards. What the dropped ones covered is in the digest (the architecture and
processors are fixed for the life of a loaded model). A call whose kept guards fail
(nothing known does that: the gate's signature is what they check) falls back to
dynamo's own compiled function, logged.

Anything that goes wrong (an artifact that cannot be saved, loaded or was made by another
torch) falls back to dynamo's lazy compile for that signature, logged once; a signature
that could not be compiled ahead of time leaves a `.failed` file beside the artifacts so
later starts do not try again. Nothing here changes which shapes run compiled or the
images: only how a compiled forward comes to exist.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

ARTIFACT_SUFFIX = ".aot"
FAILED_SUFFIX = ".failed"
# Dynamo's message when a loaded artifact's guards reject a call.
GUARD_FAILURE = "GuardManager check failed"


def call_forward(module: Any, *args: Any, **kwargs: Any) -> Any:
    """What is compiled ahead of time: the module's class forward, with the module an
    argument (its weights become inputs, nothing of the instance is saved). Module level,
    so that the artifact refers to it by name; diffusers wraps `forward` in decorators
    that cannot be pickled by name."""
    return type(module).forward(module, *args, **kwargs)


def serializable_guards(entries: Any) -> list[bool]:
    """A `guard_filter_fn`: keeps every guard that can be saved with the artifact."""
    from torch._dynamo.guards import CheckFunctionManager

    unsupported = set(CheckFunctionManager.UNSUPPORTED_SERIALIZATION_GUARD_TYPES)
    return [
        not (entry.is_global or entry.guard_type in unsupported or unsupported & set(entry.derived_guard_types or ()))
        for entry in entries
    ]


def aot_compile_available() -> bool:
    """torch.compile(...).aot_compile exists from torch 2.11 (behind a dynamo flag there)."""
    import torch

    return hasattr(torch.compiler, "load_compiled_function")


def inductor_options(mode: str | None) -> dict[str, Any]:
    """torch.compile's `mode` as options: aot_compile needs `options` (for the guard
    filter), and torch.compile takes a mode or options, not both."""
    if mode in (None, "default"):
        return {}
    from torch._inductor import list_mode_options

    return dict(list_mode_options(mode))


@dataclass
class PrecompiledStore:
    """The directory artifacts are saved to and loaded from, and what happened to them
    (read by the log and the benchmark)."""

    directory: Path
    loaded: int = 0
    saved: int = 0
    fallbacks: int = 0
    seconds: float = 0.0  # spent loading or compiling ahead of time

    def path(self, name: str, identity: str, signature: Any) -> Path:
        digest = hashlib.sha256(repr((name, identity, signature)).encode("utf-8")).hexdigest()[:20]
        return self.directory / f"{name}-{digest}{ARTIFACT_SUFFIX}"

    def summary(self) -> str:
        return (
            f"{self.loaded} loaded, {self.saved} compiled ahead of time and saved, {self.fallbacks} left to dynamo, "
            f"{self.seconds:.1f}s"
        )


@dataclass
class PrecompiledForward:
    """The ahead-of-time compiled functions of one gated forward, one per signature."""

    name: str
    module: Any
    # The module's architecture as text: what the artifact depends on besides its inputs.
    identity: str
    # torch.compile with the same backend and settings as the lazy path.
    compile_function: Callable[..., Any]
    options: dict[str, Any]
    store: Callable[[], PrecompiledStore | None]
    # Per signature: the precompiled function, or None where dynamo compiles it instead.
    functions: dict[Any, Callable[..., Any] | None] = field(default_factory=dict)
    # The signatures whose precompiled function has run once without an error.
    proven: set[Any] = field(default_factory=set)
    # The signatures whose function was loaded from the store (saved by an earlier start).
    loaded: set[Any] = field(default_factory=set)

    def run(self, signature: Any, args: tuple, kwargs: dict, fallback: Callable[..., Any]) -> Any:
        """`fallback(*args, **kwargs)` (dynamo's lazily compiled forward) where no
        precompiled function exists for `signature`, its guards reject the call, or its
        first call fails (the first call is during warm-up: a broken artifact must not
        keep a replica from starting)."""
        import torch

        function = self.functions.get(signature, ...)
        if function is ...:
            function = self._prepare(signature, args, kwargs)
        if function is None:
            return fallback(*args, **kwargs)
        try:
            result = function(self.module, *args, **kwargs)
        except torch.cuda.OutOfMemoryError:
            raise  # the batch is too big, not the artifact broken: engine/oom.py splits it
        except Exception as error:
            guards_rejected = isinstance(error, RuntimeError) and GUARD_FAILURE in str(error)
            if guards_rejected and signature in self.loaded and signature not in self.proven:
                # Saved by a start whose module differed in something the file name does
                # not digest: compiled again for this one, so the next start loads a match.
                log.warning("%s: a saved precompiled forward's guards rejected this start's module; "
                            "compiling it ahead of time again: %s", self.name, str(error)[:500])
                self.loaded.discard(signature)
                return self._replace(signature, args, kwargs, fallback)
            if guards_rejected:
                log.warning("%s: a precompiled forward's guards rejected the call, dynamo compiles it: %s",
                            self.name, str(error)[:500])
            elif signature in self.proven:
                raise  # it ran before: the error is this call's, not the artifact's
            else:
                self._discard(signature, f"its first call failed: {type(error).__name__}: {error}")
            self.functions[signature] = None
            return fallback(*args, **kwargs)
        self.proven.add(signature)
        return result

    def _replace(self, signature: Any, args: tuple, kwargs: dict, fallback: Callable[..., Any]) -> Any:
        store = self.store()
        function = None
        if store is not None:
            store.loaded -= 1
            function = self._compile_and_save(store.path(self.name, self.identity, signature), args, kwargs)
            if function is not None:
                store.saved += 1
            else:
                store.fallbacks += 1
        self.functions[signature] = function
        # Run as any first call: a failure of the new function falls back to dynamo too.
        return self.run(signature, args, kwargs, fallback)

    def _discard(self, signature: Any, reason: str) -> None:
        store = self.store()
        if store is None:
            log.warning("%s: precompiled forward dropped, %s", self.name, reason[:500])
            return
        path = store.path(self.name, self.identity, signature)
        path.unlink(missing_ok=True)
        self._give_up(path, f"precompiled forward dropped, {reason}")

    def _prepare(self, signature: Any, args: tuple, kwargs: dict) -> Callable[..., Any] | None:
        # Called on the pipeline thread only (CUDA graph trees are per thread).
        store = self.store()
        function = None
        if store is not None and aot_compile_available():
            started = time.perf_counter()
            path = store.path(self.name, self.identity, signature)
            function = self._load(path) if path.is_file() else None
            if function is not None:
                store.loaded += 1
                self.loaded.add(signature)
            elif not path.with_suffix(FAILED_SUFFIX).exists():
                function = self._compile_and_save(path, args, kwargs)
                if function is not None:
                    store.saved += 1
            if function is None:
                store.fallbacks += 1
            store.seconds += time.perf_counter() - started
        self.functions[signature] = function
        return function

    def _load(self, path: Path) -> Callable[..., Any] | None:
        import torch

        try:
            with path.open("rb") as file:
                return torch.compiler.load_compiled_function(file)
        except Exception as error:  # another torch, a truncated file: compile it again
            log.warning("%s: precompiled forward %s not loaded (%s: %s); compiling it again",
                        self.name, path.name, type(error).__name__, str(error)[:300])
            return None

    def _compile_and_save(self, path: Path, args: tuple, kwargs: dict) -> Callable[..., Any] | None:
        import torch

        if hasattr(torch._dynamo.config, "enable_aot_compile"):
            torch._dynamo.config.enable_aot_compile = True  # torch 2.11 and 2.12 gate the API
        options = {**self.options, "guard_filter_fn": serializable_guards}
        # The guards' saved state holds a copy of the module's attributes, and the module's
        # `forward` attribute is the gate (holding this process's compiled functions): it
        # is set aside while the module is traced, as the class's forward is what runs.
        gate = self.module.__dict__.pop("forward", None)
        try:
            compiled = self.compile_function(call_forward, fullgraph=True, dynamic=False, options=options)
            function = compiled.aot_compile(((self.module, *args), kwargs))
        except Exception as error:
            self._give_up(path, f"could not be compiled ahead of time: {type(error).__name__}: {error}")
            return None
        finally:
            if gate is not None:
                self.module.forward = gate
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            function.save_compiled_function(str(partial))
            os.replace(partial, path)  # whole or absent, with several replicas writing
        except Exception as error:
            log.warning("%s: precompiled forward not saved to %s (%s: %s); this process uses it all the same",
                        self.name, path, type(error).__name__, str(error)[:300])
        return function

    def _give_up(self, path: Path, reason: str) -> None:
        log.warning("%s: %s; dynamo compiles this shape at every start", self.name, reason[:500])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_suffix(FAILED_SUFFIX).write_text(reason + "\n")
        except OSError:
            pass


def module_identity(
    module: Any, config: Any, extra: dict[str, Any] | None = None, processors: dict[str, Any] | None = None
) -> str:
    """The architecture a precompiled forward of `module` is valid for: its class, the
    model config it was built from, the dtype of its weights, its attention processors
    (`processors`, default the module's own: a VAE decoder's are listed on its VAE);
    and the platform (torch, GPU), which the compile cache's key also holds, unless an
    operator's TORCHINDUCTOR_CACHE_DIR is shared by nodes of several kinds."""
    import json
    from collections.abc import Mapping

    from .compile_cache import platform_fingerprint

    if processors is None:
        processors = getattr(module, "attn_processors", None)
    parameters = getattr(module, "parameters", None)
    weights = next(iter(parameters()), None) if parameters is not None else None
    described = {
        "class": f"{type(module).__module__}.{type(module).__qualname__}",
        "config": dict(config) if isinstance(config, Mapping) else repr(config),
        "dtype": str(weights.dtype) if weights is not None else None,
        "processors": sorted({type(p).__name__ for p in processors.values()}) if processors else None,
        "platform": platform_fingerprint(weights.device.type) if weights is not None else None,
        **(extra or {}),
    }
    return json.dumps(described, sort_keys=True, default=str)
