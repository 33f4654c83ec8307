"""A compile cache that outlives the pod: inductor's caches on the model cache volume.

torch.compile's expensive part is inductor: generating and compiling Triton/C++ kernels
and, with `max-autotune`, benchmarking them. PyTorch caches that work on disk (the FX
graph cache, the AOTAutograd cache, the autotuning results and Triton's kernel cache),
all under `TORCHINDUCTOR_CACHE_DIR`, which by default is in /tmp and dies with the pod.
Pointed at the model cache volume, a restarted pod or a second replica compiles from
the cache: dynamo still traces the model (seconds), inductor reads its results instead
of producing them again.

The directory is `CACHE_DIR/compile/<key>`, where the key hashes everything that changes
what is compiled: torch (and CUDA, Triton) versions, the GPU's name and compute
capability (or the CPU model), the checkpoint and its revision, the warmed shapes (sizes
x batch buckets) and the fast-path settings. Inductor's own entries are content-hashed
inside it, so a stale directory is never wrong, only unused; `key.json` beside them says
what a directory was made for. Old directories are not removed by the server
(docs/operations.md, "The compile cache").

PyTorch's Mega-Cache (`torch.compiler.save_cache_artifacts`) would bundle the same
entries into one file; with the directory itself on the volume it adds nothing. What
inductor's caches cannot skip, dynamo's trace of each shape, is skipped by the
precompiled forwards kept in the same directory (`precompiled.py`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, MutableMapping

log = logging.getLogger(__name__)

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def platform_fingerprint(device: str) -> dict[str, Any]:
    """The software and hardware a compiled kernel is only valid for."""
    import torch

    fingerprint: dict[str, Any] = {"torch": torch.__version__, "device": device, "machine": platform.machine()}
    if device == "cuda":
        fingerprint["cuda"] = torch.version.cuda
        fingerprint["gpu"] = torch.cuda.get_device_name(0)
        fingerprint["capability"] = list(torch.cuda.get_device_capability(0))
    else:
        fingerprint["cpu"] = _cpu_model()
    try:
        import triton

        fingerprint["triton"] = triton.__version__
    except ImportError:
        pass
    return fingerprint


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cache_key(
    fingerprint: dict[str, Any],
    *,
    model: str,
    revision: str | None,
    shapes: list[tuple[int, int, int, float]],  # width, height, batch, CFG
    settings: dict[str, Any],
) -> dict[str, Any]:
    """The key's contents (written to key.json); `key_digest` names the directory."""
    return {
        "platform": fingerprint,
        "model": model,
        "revision": revision,
        "shapes": [list(shape) for shape in shapes],
        "settings": settings,
    }


def key_digest(key: dict[str, Any]) -> str:
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class CompileCache:
    directory: Path
    warm: bool  # it held compiled entries before this process started
    own: bool  # False: the operator's TORCHINDUCTOR_CACHE_DIR was kept


def operator_cache_dir(environ: MutableMapping[str, str]) -> str | None:
    """TORCHINDUCTOR_CACHE_DIR as the operator set it, or None.

    Importing `torch._inductor` (which the fast path does to set inductor's options, long
    before the first compile) writes inductor's default, `/tmp/torchinductor_<user>`, into
    the variable when it is unset. That value is torch's, not the operator's: taken for a
    choice, it kept every compile in the pod's /tmp and the volume's cache was never used."""
    value = environ.get(CACHE_ENV)
    if not value:
        return None
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        default = default_cache_dir()
    except Exception:  # noqa: BLE001 - no torch, or a user name it cannot find: no default to tell apart
        return value
    return None if os.path.abspath(value) == os.path.abspath(default) else value


def compile_cache_dir(cache_dir: Path, key: dict[str, Any]) -> Path:
    return Path(cache_dir) / "compile" / key_digest(key)


def activate_compile_cache(
    cache_dir: Path,
    key: dict[str, Any],
    *,
    environ: MutableMapping[str, str] | None = None,
    configure_torch: bool = True,
) -> CompileCache:
    """Point inductor's (and Triton's) caches at the volume, for this process.

    An operator's own TORCHINDUCTOR_CACHE_DIR wins (a node-local SSD, say). Must run
    before the first compile; environment variables are what inductor reads at compile
    time, and the on/off switches are also set on torch's config objects, which read
    their variables once at import.
    """
    environ = os.environ if environ is None else environ
    operators = operator_cache_dir(environ)
    if operators is not None:
        directory = Path(operators)
        own = False
    else:
        directory = compile_cache_dir(cache_dir, key)
        own = True
    warm = directory.is_dir() and any(path.is_file() for path in directory.rglob("*") if path.name != "key.json")
    directory.mkdir(parents=True, exist_ok=True)
    if own:
        (directory / "key.json").write_text(json.dumps(key, indent=2, sort_keys=True, default=str))
        environ[CACHE_ENV] = str(directory)
        environ.setdefault("TRITON_CACHE_DIR", str(directory / "triton"))
    environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "1"
    environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] = "1"
    if configure_torch:
        import torch._functorch.config as functorch_config
        import torch._inductor.config as inductor_config

        inductor_config.fx_graph_cache = True
        functorch_config.enable_autograd_cache = True
    log.info("compile cache: %s (%s)", directory, "warm" if warm else "empty: the first start compiles")
    return CompileCache(directory=directory, warm=warm, own=own)
