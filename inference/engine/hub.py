"""Fetching one chosen file of a Hugging Face Hub repo: how LoRA adapters (engine/lora.py)
and learned upscalers (engine/upscalers.py) reach the cache.

Both pick the one file a load reads from the repo's file list and download only that
file. The init container's `download` and the server call the same fetch functions, so
the server reads exactly the prefetched file; with the Hub unreachable, or with
HF_HUB_OFFLINE=1, the list is what a previous fetch put in the cache, and the same file
is picked from it. A spec may pin the repo's revision (`REPO@REVISION`, a branch, tag or
commit sha): both fetch that revision, and offline its cached listing and file are read. `HF_TOKEN` /
`HF_TOKEN_PATH` are read by huggingface_hub itself (gated or private repos) and never logged.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

# What `git check-ref-format` refuses in a branch or tag name (the Hub's revisions are git refs;
# a commit sha passes these rules too): control characters, space, ~ ^ : ? * [ \, "..", "@{",
# "//", a leading "-" (an option to git), a component that starts with "." or ends with ".lock", a
# leading or trailing "/", a trailing ".", and "@" alone. A comma too, which git allows: the
# spec lists (SD_LORA, SD_UPSCALER) are comma-separated.
_NOT_IN_A_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\,]|\.\.|@\{|//|^-|^/|/$|\.$|(^|/)\.|\.lock(/|$)")


def revision_problem(revision: str) -> str | None:
    """Why `revision` is not a Hub revision (a branch, tag or commit sha), or None when it is one."""
    if not revision:
        return "the revision after '@' is empty"
    if revision == "@" or _NOT_IN_A_REF.search(revision):
        return (
            f"revision {revision!r} is not a branch, tag or commit: git refuses spaces, control characters, "
            "~ ^ : ? * [ \\ , '..' '@{' '//', a leading '-' or '/', a trailing '/' or '.', "
            "a part starting with '.' or ending with '.lock'"
        )
    return None


def looks_local(source: str) -> bool:
    """`source` names a local file or directory, not a Hub repo id (which is `owner/name`)."""
    return source.startswith(("/", ".", "~")) or Path(source).expanduser().exists()


def split_revision(source: str) -> tuple[str, str | None]:
    """`REPO[@REVISION]` -> (REPO, REVISION or None); raises ValueError saying what is wrong.

    A Hub repo id never contains '@', so the first one starts the revision (which may hold '/',
    as `refs/pr/1` does). A local path takes no revision; one that exists with '@' in its name
    is a path, as `--model` takes it.
    """
    repo, at, revision = source.partition("@")
    if not at or Path(source).expanduser().exists():
        return source, None
    if not repo:
        raise ValueError("the repo before '@' is empty")
    if looks_local(repo):
        raise ValueError(f"{repo!r} is a local path; only a Hugging Face repo takes a revision (@{revision})")
    problem = revision_problem(revision)
    if problem:
        raise ValueError(problem)
    return repo, revision


def cached_repo_files(repo: str, cache_dir: Path, revision: str | None = None) -> list[str]:
    """The files of `repo` at `revision` (None: the default branch) that a previous fetch put in the cache."""
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(repo, cache_dir=str(cache_dir), revision=revision, local_files_only=True))
    return [str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()]


def repo_files(repo: str, cache_dir: Path, what: str, revision: str | None = None) -> list[str]:
    """The files of `repo` at `revision`, from the Hub; offline or when the Hub cannot be reached, the cached ones."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return cached_repo_files(repo, cache_dir, revision)
    try:
        return HfApi().list_repo_files(repo, revision=revision)
    except Exception as error:  # Hub unreachable: the cache, as diffusers does for models
        try:
            files = cached_repo_files(repo, cache_dir, revision)
        except Exception:
            raise error from None
        log.warning("could not list %s repo %s (%s); using the cached files", what, repo, type(error).__name__)
        return files


def fetch_chosen_file(
    repo: str, cache_dir: Path, what: str, choose: Callable[[list[str]], str], revision: str | None = None
) -> Path:
    """The local path of the one file `choose` picks from `repo`'s files at `revision` (None: the
    default branch), downloaded into the cache."""
    from huggingface_hub import hf_hub_download

    name = choose(repo_files(repo, cache_dir, what, revision))
    return Path(hf_hub_download(repo, name, cache_dir=str(cache_dir), revision=revision))
