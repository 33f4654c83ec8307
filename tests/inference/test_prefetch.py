"""The init container's `download` fetches exactly the files `serve` then loads.

A local fake Hub serves small repos shaped like real ones (tests/inference/variant_fixture.py):
fp16 and full-precision files, a safety checker, root single-file checkpoints, .bin
duplicates. `download` runs against it as the init container would; then the server's
loading path runs with the Hub unreachable (HF_HUB_OFFLINE=1). The fp16 files hold the
negated weights, so the loaded weights say which file each module was read from. The same
holds for a learned upscaler's repo, whose files other than the loaded one are negated.
A LoRA and an upscaler repo also have a pinned revision holding other weights (a LoRA of
another seed, the negated network), so what was loaded says which revision it came from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from inference.engine.builtin import ensure_builtin

from .fake_hub import FakeHub
from .lora_fixture import make_tiny_lora
from .server import REPO, ServerProcess
from .variant_fixture import LOADED_COMPONENTS, build_repos, file_sums, is_weight_file, same_weights

COMMIT = "89abcdef0123456789abcdef0123456789abcdef"
# Each module's weight file, per repo, by what the fp16 variant decision picks.
DEFAULT_FILES = {
    "unet": "unet/diffusion_pytorch_model.safetensors",
    "vae": "vae/diffusion_pytorch_model.safetensors",
    "text_encoder": "text_encoder/model.safetensors",
}
FP16_FILES = {name: path.replace(".safetensors", ".fp16.safetensors") for name, path in DEFAULT_FILES.items()}
EXPECTED_FP16 = {
    "acme/tiny-both": FP16_FILES,
    "acme/tiny-mixed": {**FP16_FILES, "text_encoder": DEFAULT_FILES["text_encoder"]},  # no fp16 text encoder
    "acme/tiny-fp32-only": DEFAULT_FILES,
}


LORA_REPO = "acme/tiny-lora"
UPSCALER_REPO = "acme/tiny-esrgan"
UPSCALER_FILE = "tiny-esrgan-x4.safetensors"  # the one file of UPSCALER_REPO a load reads
UPSCALER_OTHERS = ("tiny-esrgan-x4.pth", "experiments/tiny-esrgan-x4-v0.safetensors")
# Revisions other than `main`, each holding other weights: a pull request's ref (a name with
# '/', quoted whole in the Hub's URLs) and a commit sha.
LORA_PINNED = "refs/pr/1"
UPSCALER_PINNED = "0123456789abcdef0123456789abcdef01234567"
LORA_FILE = "pytorch_lora_weights.safetensors"


def _upscaler_repo(cache_dir: Path, target: Path) -> Path:
    """An ESRGAN release as published: the network as safetensors and as a .pth pickle, an
    older network in a subfolder, a README. Only UPSCALER_FILE holds the tiny upscaler's
    weights; the others hold them negated, so a loaded network says which file it came from."""
    import torch
    from safetensors.torch import load_file, save_file

    from inference.engine.upscalers import ensure_builtin_upscaler, weight_file

    state = load_file(str(weight_file(ensure_builtin_upscaler(cache_dir))))
    negated = {key: -value for key, value in state.items()}
    (target / "experiments").mkdir(parents=True)
    save_file(state, str(target / UPSCALER_FILE))
    torch.save(negated, target / UPSCALER_OTHERS[0])
    save_file(negated, str(target / UPSCALER_OTHERS[1]))
    (target / "README.md").write_text("a tiny ESRGAN")
    return target


@pytest.fixture(scope="module")
def repos(cache_dir, tmp_path_factory) -> dict[str, Path]:
    builtin = ensure_builtin("builtin:tiny", cache_dir)
    built = build_repos(builtin, tmp_path_factory.mktemp("hub-repos"))
    # A LoRA repo as training scripts publish them: the adapter, an intermediate
    # checkpoint's copy, and other files; a load reads the adapter only.
    lora = make_tiny_lora(builtin, tmp_path_factory.mktemp("hub-lora") / "tiny-lora")
    (lora / "checkpoint-500").mkdir()
    (lora / "checkpoint-500" / "pytorch_lora_weights.safetensors").write_bytes(
        (lora / "pytorch_lora_weights.safetensors").read_bytes())
    (lora / "optimizer.bin").write_bytes(b"not loaded")
    (lora / "README.md").write_text("a tiny LoRA")
    upscaler = _upscaler_repo(cache_dir, tmp_path_factory.mktemp("hub-upscaler") / "tiny-esrgan")
    return {**{f"acme/tiny-{name}": folder for name, folder in built.items()}, LORA_REPO: lora, UPSCALER_REPO: upscaler}


@pytest.fixture(scope="module")
def pinned(cache_dir, tmp_path_factory) -> dict[str, Path]:
    """The pinned revisions' folders: LORA_REPO at LORA_PINNED, UPSCALER_REPO at UPSCALER_PINNED."""
    from safetensors.torch import load_file, save_file

    builtin = ensure_builtin("builtin:tiny", cache_dir)
    lora = make_tiny_lora(builtin, tmp_path_factory.mktemp("hub-lora-pr") / "tiny-lora", seed=2)
    upscaler = tmp_path_factory.mktemp("hub-upscaler-pinned") / "tiny-esrgan"
    _upscaler_repo(cache_dir, upscaler)  # the release's layout, then its loaded file negated
    save_file({key: -value for key, value in load_file(str(upscaler / UPSCALER_FILE)).items()}, str(upscaler / UPSCALER_FILE))
    return {LORA_REPO: lora, UPSCALER_REPO: upscaler}


@pytest.fixture
def hub(repos, pinned):
    revisions = {LORA_REPO: {LORA_PINNED: pinned[LORA_REPO]}, UPSCALER_REPO: {UPSCALER_PINNED: pinned[UPSCALER_REPO]}}
    with FakeHub(repos, COMMIT, revisions) as running:
        yield running


def _env(hub: FakeHub, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HOME", "HF_HUB_CACHE") and not key.startswith("SD_")}
    return {**env, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_TELEMETRY": "1", **extra}


def _download(hub: FakeHub, cache: Path, models: list[str], *flags: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "inference", "download", "--model", ",".join(models), "--cache-dir", str(cache), *flags],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=_env(hub, **env),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def _serve_load(hub: FakeHub, cache: Path, models: list[str], **env: str) -> dict:
    """The server's loading path (its flags, device/dtype decision and load_model), offline."""
    asked_before = len(hub.requests)
    result = subprocess.run(
        [sys.executable, "-m", "tests.inference.offline_load", "--model", ",".join(models), "--cache-dir", str(cache)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=_env(hub, HF_HUB_OFFLINE="1", **env),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert hub.requests[asked_before:] == [], "the offline load asked the Hub"
    return json.loads(result.stdout.strip().splitlines()[-1])


def _cached_files(cache: Path, repo: str) -> set[str]:
    snapshot = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / COMMIT
    return {str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file()}


def _files_read(loaded: dict, folder: Path) -> dict[str, str]:
    """Per module, the one repo file whose weights it holds (default or fp16 variant)."""
    read = {}
    for module in LOADED_COMPONENTS:
        candidates = [DEFAULT_FILES[module], FP16_FILES[module]]
        matching = [path for path in candidates
                    if (folder / path).is_file() and same_weights(loaded["modules"][module], file_sums(folder / path))]
        assert len(matching) == 1, f"{module}: weights match {matching}, expected exactly one file"
        read[module] = matching[0]
    return read


def test_gpu_pod_prefetches_the_fp16_variant_that_serve_loads_offline(hub, repos, tmp_path):
    cache = tmp_path / "cache"
    models = list(EXPECTED_FP16)
    # As the Deployment runs it: a CPU-only init container told the server's device.
    out = _download(hub, cache, models, SD_DEVICE="cuda")
    loaded = _serve_load(hub, cache, models, SD_DEVICE="cuda")
    for repo, expected in EXPECTED_FP16.items():
        fetched_weights = {path for path in hub.downloaded(repo) if is_weight_file(path)}
        # Exactly the chosen files: no full-precision duplicate, safety checker, .bin or
        # root single-file checkpoint; the default file only where no fp16 one exists.
        assert fetched_weights == set(expected.values()), repo
        assert {path for path in _cached_files(cache, repo) if is_weight_file(path)} == fetched_weights, repo
        assert not any(path.startswith("safety_checker/") for path in _cached_files(cache, repo))
        # What serve read is what was fetched, one file per module, loaded as float16.
        assert loaded[repo]["dtype"] == "torch.float16" and loaded[repo]["safety_checker"] is False
        assert _files_read(loaded[repo], repos[repo]) == expected, repo
        assert set(_files_read(loaded[repo], repos[repo]).values()) == fetched_weights
    assert "acme/tiny-both is in" in out and "(fp16 weights, for cuda/float16)" in out


def test_cpu_pod_prefetches_the_full_precision_files_and_serves_offline(hub, repos, tmp_path):
    cache, repo = tmp_path / "cache", "acme/tiny-both"
    lora = ("--lora", f"{LORA_REPO}:ink:0.8")
    out = _download(hub, cache, [repo], *lora)  # device auto: no GPU here, so cpu/float32
    # The LoRA repo: its adapter file only, which the server then loads offline.
    assert hub.downloaded(LORA_REPO) == {"pytorch_lora_weights.safetensors"}
    fetched_weights = {path for path in hub.downloaded(repo) if is_weight_file(path)}
    assert fetched_weights == set(DEFAULT_FILES.values())
    assert {path for path in _cached_files(cache, repo) if is_weight_file(path)} == fetched_weights
    loaded = _serve_load(hub, cache, [repo])
    assert loaded[repo]["dtype"] == "torch.float32"
    assert set(_files_read(loaded[repo], repos[repo]).values()) == fetched_weights
    # The real server, Hub unreachable (ServerProcess sets HF_HUB_OFFLINE=1), serves from it.
    asked_before = len(hub.requests)
    with ServerProcess("--model", repo, *lora, cache_dir=cache, log_path=tmp_path / "serve.log",
                       env={"HF_ENDPOINT": hub.url}) as server:
        plain, with_lora = (
            httpx.post(f"{server.url}/v1/txt2img", timeout=120,
                       json={"prompt": prompt, "seed": 3, "width": 64, "height": 64, "steps": 2})
            for prompt in ("a boat", "a boat <lora:ink:1>")
        )
        assert plain.status_code == 200 and with_lora.status_code == 200, (plain.text, with_lora.text)
        assert plain.json()["images"] != with_lora.json()["images"]  # the adapter was loaded and applied
        assert "from default weights" in server.log() and "loaded LoRA ink" in server.log()
    assert hub.requests[asked_before:] == []
    assert "(default weights, for cpu/float32)" in out
    assert {path for path in _cached_files(cache, repo) if is_weight_file(path)} == fetched_weights


def test_learned_upscalers_are_prefetched_and_their_first_use_reads_them_offline(hub, repos, tmp_path):
    cache, token = tmp_path / "cache", "hf_prefetch_test_token"
    # As the Deployment runs it: SD_UPSCALER in the init container's environment too.
    upscalers = f"{UPSCALER_REPO}:ESRGAN tiny,builtin:tiny-upscaler"
    out = _download(hub, cache, ["builtin:tiny"], SD_UPSCALER=upscalers, HF_TOKEN=token)
    # The one file a load reads: not the .pth duplicate, the subfolder's network or the README.
    assert hub.downloaded(UPSCALER_REPO) == {UPSCALER_FILE}
    assert _cached_files(cache, UPSCALER_REPO) == {UPSCALER_FILE}
    assert f"{UPSCALER_REPO} is in {cache}" in out
    # HF_TOKEN (gated or private repos) went with every request for the repo; it is never printed.
    sent = [authorization for path, authorization in hub.authorizations if UPSCALER_REPO in path]
    assert sent and set(sent) == {f"Bearer {token}"}
    assert token not in out
    # The server's first use, Hub unreachable: the network is read from the downloaded file.
    loaded = _serve_load(hub, cache, ["builtin:tiny"], SD_UPSCALER=upscalers)["upscalers"]
    assert set(loaded) == {"ESRGAN tiny", "tiny-upscaler"}
    assert same_weights(loaded["ESRGAN tiny"], file_sums(repos[UPSCALER_REPO] / UPSCALER_FILE))
    assert not same_weights(loaded["ESRGAN tiny"], file_sums(repos[UPSCALER_REPO] / UPSCALER_OTHERS[1]))


def _weights_total(path: Path) -> float:
    return sum(file_sums(path).values())


def test_pinned_lora_and_upscaler_revisions_are_prefetched_and_loaded_offline(hub, repos, pinned, tmp_path):
    cache = tmp_path / "cache"
    # As the Deployment renders them: each repo once unpinned (its main branch) and once pinned.
    loras = f"{LORA_REPO}:ink:1,{LORA_REPO}@{LORA_PINNED}:ink-pr:1"
    upscalers = f"{UPSCALER_REPO}:ESRGAN main,{UPSCALER_REPO}@{UPSCALER_PINNED}:ESRGAN pinned"
    out = _download(hub, cache, ["builtin:tiny"], SD_LORA=loras, SD_UPSCALER=upscalers)
    # The Hub was asked for each revision: its file listing and its one weight file.
    assert hub.downloaded_at(LORA_REPO) == {("main", LORA_FILE), (LORA_PINNED, LORA_FILE)}
    assert hub.downloaded_at(UPSCALER_REPO) == {("main", UPSCALER_FILE), (UPSCALER_PINNED, UPSCALER_FILE)}
    for repo, revision in ((LORA_REPO, LORA_PINNED), (UPSCALER_REPO, UPSCALER_PINNED)):
        assert any(request.startswith(f"GET /api/models/{repo}/tree/{revision}") for request in hub.requests), repo
        assert f"{repo}@{revision} is in {cache}" in out
    lora_cache = cache / f"models--{LORA_REPO.replace('/', '--')}"
    assert (lora_cache / "refs" / LORA_PINNED).read_text() == FakeHub.commit_of(LORA_REPO, LORA_PINNED)
    upscaler_cache = cache / f"models--{UPSCALER_REPO.replace('/', '--')}"
    assert (upscaler_cache / "snapshots" / UPSCALER_PINNED / UPSCALER_FILE).is_file()
    # The server's loading path, Hub unreachable: each adapter and network holds its revision's weights.
    loaded = _serve_load(hub, cache, ["builtin:tiny"], SD_LORA=loras, SD_UPSCALER=upscalers)
    main_lora, pinned_lora = _weights_total(repos[LORA_REPO] / LORA_FILE), _weights_total(pinned[LORA_REPO] / LORA_FILE)
    assert abs(main_lora - pinned_lora) > 1.0  # the two revisions' adapters differ
    assert loaded["loras"]["ink-pr"] == pytest.approx(pinned_lora, rel=1e-6)
    assert loaded["loras"]["ink"] == pytest.approx(main_lora, rel=1e-6)
    assert same_weights(loaded["upscalers"]["ESRGAN pinned"], file_sums(pinned[UPSCALER_REPO] / UPSCALER_FILE))
    assert same_weights(loaded["upscalers"]["ESRGAN main"], file_sums(repos[UPSCALER_REPO] / UPSCALER_FILE))
    assert not same_weights(loaded["upscalers"]["ESRGAN pinned"], loaded["upscalers"]["ESRGAN main"])
    # The real server, Hub unreachable, starts with both adapters and applies each: they differ.
    asked_before = len(hub.requests)
    with ServerProcess("--model", "builtin:tiny", cache_dir=cache, log_path=tmp_path / "serve.log",
                       env={"HF_ENDPOINT": hub.url, "SD_LORA": loras, "SD_UPSCALER": upscalers}) as server:
        images = []
        for prompt in ("a boat <lora:ink:1>", "a boat <lora:ink-pr:1>"):
            response = httpx.post(f"{server.url}/v1/txt2img", timeout=120,
                                  json={"prompt": prompt, "seed": 3, "width": 64, "height": 64, "steps": 2})
            assert response.status_code == 200, response.text
            images.append(response.json()["images"])
        assert images[0] != images[1]
        assert f"loaded LoRA ink-pr from {LORA_REPO}@{LORA_PINNED}" in server.log()
    assert hub.requests[asked_before:] == []


def test_a_pinned_revision_the_hub_lacks_fails_the_download_naming_it(hub, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "inference", "download", "--model", "builtin:tiny", "--cache-dir", str(tmp_path),
         "--lora", f"{LORA_REPO}@v9:ink"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=_env(hub),
    )
    assert result.returncode == 1
    assert f"could not download '{LORA_REPO}@v9'" in result.stderr and "RevisionNotFound" in result.stderr
    assert hub.downloaded_at(LORA_REPO) == set()
