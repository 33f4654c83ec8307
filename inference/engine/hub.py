"""Fetching one chosen file of a Hugging Face Hub repo: how LoRA adapters (engine/lora.py)
and learned upscalers (engine/upscalers.py) reach the cache.

Both pick the one file a load reads from the repo's file list and download only that
file. The init container's `download` and the server call the same fetch functions, so
the server reads exactly the prefetched file; with the Hub unreachable, or with
HF_HUB_OFFLINE=1, the list is what a previous fetch put in the cache, and the same file
is picked from it. `HF_TOKEN` / `HF_TOKEN_PATH` are read by huggingface_hub itself (gated
or private repos) and never logged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)


def cached_repo_files(repo: str, cache_dir: Path) -> list[str]:
    """The files of `repo` that a previous fetch put in the cache (its default revision)."""
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(repo, cache_dir=str(cache_dir), local_files_only=True))
    return [str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()]


def repo_files(repo: str, cache_dir: Path, what: str) -> list[str]:
    """The files of `repo`, from the Hub; offline or when the Hub cannot be reached, the cached ones."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return cached_repo_files(repo, cache_dir)
    try:
        return HfApi().list_repo_files(repo)
    except Exception as error:  # Hub unreachable: the cache, as diffusers does for models
        try:
            files = cached_repo_files(repo, cache_dir)
        except Exception:
            raise error from None
        log.warning("could not list %s repo %s (%s); using the cached files", what, repo, type(error).__name__)
        return files


def fetch_chosen_file(repo: str, cache_dir: Path, what: str, choose: Callable[[list[str]], str]) -> Path:
    """The local path of the one file `choose` picks from `repo`'s files, downloaded into the cache."""
    from huggingface_hub import hf_hub_download

    name = choose(repo_files(repo, cache_dir, what))
    return Path(hf_hub_download(repo, name, cache_dir=str(cache_dir)))
