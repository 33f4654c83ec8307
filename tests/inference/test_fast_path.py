"""The fast path without a GPU: buckets, the --compile choice and where it is applied,
padding that never changes an image, warm-up before ready, the compile cache's key and
place, and the flags. torch.compile itself is replaced by a recording fake here (a real
compile of the tiny UNet takes minutes on these CPUs; bench.compile_cpu measures it)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from inference.__main__ import parse
from inference.engine.buckets import batch_buckets, bucket_for
from inference.engine.compile_cache import activate_compile_cache, cache_key, compile_cache_dir, key_digest
from inference.engine.compiled_shapes import CompiledShapes
from inference.engine.fast_path import FastPathConfig, apply_fast_path, choose_fast_path
from inference.engine.generate import BatchKey, GenerationInterrupted, ImageTask, run_batch
from inference.engine.padded import padded_tasks, run_bucketed
from inference.engine.samplers import resolve
from inference.engine.warmup import WarmupProgress, parse_warmup_sizes, warm_up, warmup_plan, warmup_sizes

from .conftest import slow_steps

# -- buckets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_batch", "buckets"),
    [(1, (1,)), (2, (1, 2)), (4, (1, 2, 4)), (6, (1, 2, 4, 6)), (8, (1, 2, 4, 8)), (12, (1, 2, 4, 8, 12))],
)
def test_buckets_are_powers_of_two_then_the_maximum(max_batch, buckets):
    assert batch_buckets(max_batch) == buckets


def test_a_batch_goes_to_the_smallest_bucket_that_holds_it():
    buckets = (1, 2, 4, 8)
    assert [bucket_for(n, buckets) for n in range(1, 9)] == [1, 2, 4, 4, 8, 8, 8, 8]
    assert bucket_for(9, buckets) == 9  # larger than the largest: run as it is
    with pytest.raises(ValueError, match="at least one"):
        bucket_for(0, buckets)
    with pytest.raises(ValueError, match="max_batch_size"):
        batch_buckets(0)


# -- the --compile choice ------------------------------------------------------------


def test_auto_on_cuda_is_the_whole_fast_path():
    config = choose_fast_path("auto", "cuda", max_batch_size=4)
    assert config.compile_unet and config.compile_vae_decoder and config.fuse_qkv and config.channels_last
    assert config.unet_compile_mode == "reduce-overhead"  # CUDA graphs inside inductor
    assert config.vae_compile_mode == "default"  # no graphs for the per-image decoder
    assert config.fullgraph
    assert config.pad_batches and config.buckets == (1, 2, 4)
    assert dict(config.inductor)["conv_1x1_as_mm"] is True


def test_auto_on_the_cpu_is_eager_and_unpadded():
    config = choose_fast_path("auto", "cpu", max_batch_size=4)
    assert not config.compiles and not config.fuse_qkv and not config.channels_last and not config.pad_batches
    assert "CUDA only" in config.summary()


def test_max_autotunes_on_any_device_and_off_is_eager():
    cuda = choose_fast_path("max", "cuda", max_batch_size=8)
    assert cuda.unet_compile_mode == "max-autotune" and dict(cuda.inductor)["coordinate_descent_tuning"]
    cpu = choose_fast_path("max", "cpu", max_batch_size=8)
    assert cpu.compiles and cpu.unet_compile_mode == "max-autotune-no-cudagraphs" and not cpu.fuse_qkv
    off = choose_fast_path("off", "cuda", max_batch_size=8)
    assert not off.compiles and not off.pad_batches and off.channels_last  # eager CUDA keeps channels_last




def test_padding_can_be_forced_and_a_bad_mode_is_named():
    assert choose_fast_path("off", "cpu", max_batch_size=4, pad_batches=True).pad_batches
    with pytest.raises(ValueError, match="off, auto, max.*'fast'"):
        choose_fast_path("fast", "cuda")


class _FakeModule:
    def __init__(self):
        self.memory_format = None

    def forward(self, sample, timestep=None):
        return sample

    def to(self, memory_format=None):
        self.memory_format = memory_format


def _recording_compiler(calls):
    def compile_function(function, **options):
        calls.append((function.__self__, options))
        return function

    return compile_function


def test_apply_compiles_unet_and_decoder_through_the_injected_compiler():
    import torch

    from inference.engine.compiled_shapes import GatedForward

    unet, decoder = _FakeModule(), _FakeModule()
    pipeline = SimpleNamespace(
        unet=unet, vae=SimpleNamespace(decoder=decoder, config=SimpleNamespace(force_upcast=False), dtype=torch.float16)
    )
    config = dataclasses.replace(choose_fast_path("auto", "cuda", max_batch_size=2), fuse_qkv=False, channels_last=False)
    calls = []
    applied = apply_fast_path(pipeline, config, compile_function=_recording_compiler(calls))
    assert calls == [
        (unet, {"fullgraph": True, "dynamic": False, "mode": "reduce-overhead"}),
        (decoder, {"fullgraph": True, "dynamic": False}),
    ]
    assert applied == config
    # The modules stay themselves; their forward is gated (engine/compiled_shapes.py).
    assert isinstance(unet.forward, GatedForward) and unet.forward.timestep_as_float
    assert isinstance(decoder.forward, GatedForward) and not decoder.forward.timestep_as_float
    assert torch._dynamo.config.recompile_limit >= 64


def test_a_vae_that_upcasts_every_call_keeps_an_eager_decoder():
    import torch

    pipeline = SimpleNamespace(
        unet=_FakeModule(),
        vae=SimpleNamespace(decoder=_FakeModule(), config=SimpleNamespace(force_upcast=True), dtype=torch.float16),
    )
    config = dataclasses.replace(choose_fast_path("auto", "cuda", max_batch_size=2), fuse_qkv=False, channels_last=False)
    compiled = []
    applied = apply_fast_path(pipeline, config, compile_function=_recording_compiler(compiled))
    assert [module for module, _ in compiled] == [pipeline.unet]
    assert not applied.compile_vae_decoder and "upcasts" in applied.summary()


@pytest.fixture(scope="module")
def tiny_padded(cache_dir):
    """builtin:tiny on the CPU with padding forced to buckets (1, 2, 4) and fused QKV
    (both CUDA-only by default), loaded through load_model, so the fast path is applied
    where the server applies it."""
    from inference.engine.loading import choose_device, load_model

    config = dataclasses.replace(choose_fast_path("off", "cpu", max_batch_size=4, pad_batches=True), fuse_qkv=True)
    return load_model("builtin:tiny", cache_dir=cache_dir, device=choose_device("cpu"), fast_path=config)


def test_load_model_applies_the_fast_path(tiny_padded):
    assert tiny_padded.fast_path.pad_batches and tiny_padded.fast_path.buckets == (1, 2, 4)
    attention = next(m for m in tiny_padded.text2img.unet.modules() if type(m).__name__ == "Attention")
    assert hasattr(attention, "to_qkv") or hasattr(attention, "to_kv")  # fused projections exist
    assert "Fused" in type(attention.processor).__name__


def _key(steps=3):
    return BatchKey(
        model="builtin:tiny", kind="txt2img", width=64, height=64, steps=steps, sampler=resolve(None, None), cfg_scale=7.0
    )


def test_padding_never_changes_an_image(tiny_padded):
    """Bit-exact on the CPU: each image alone (bucket 1) is the image it is in a batch of
    three padded to four, and the same as in an unpadded batch of three."""
    key = _key()
    tasks = [ImageTask(prompt=f"prompt {i}", negative_prompt="", seed=100 + i) for i in range(3)]
    sizes = []

    def recording_run(model, key, tasks, on_step):
        sizes.append(len(tasks))
        return run_batch(model, key, tasks, on_step)

    batched = run_bucketed(tiny_padded, key, tasks, run=recording_run)
    alone = [run_bucketed(tiny_padded, key, [task], run=recording_run)[0] for task in tasks]
    unpadded = run_batch(tiny_padded, key, tasks)
    assert sizes == [4, 1, 1, 1]  # the batch of three ran as four
    assert len(batched) == 3
    for index in range(3):
        assert batched[index].tobytes() == alone[index].tobytes() == unpadded[index].tobytes(), index
    assert batched[0].tobytes() != batched[1].tobytes()  # different seeds, different images


def test_padding_is_copies_of_the_last_task_and_partial_results_are_trimmed():
    tasks = [ImageTask("a", "", 1), ImageTask("b", "", 2), ImageTask("c", "", 3)]
    assert padded_tasks(tasks, (1, 2, 4)) == tasks + [tasks[-1]]
    assert padded_tasks(tasks[:2], (1, 2, 4)) == tasks[:2]

    model = SimpleNamespace(fast_path=FastPathConfig(pad_batches=True, buckets=(1, 2, 4)))

    def interrupted(model, key, tasks, on_step):
        raise GenerationInterrupted([f"image {i}" for i in range(len(tasks))])

    with pytest.raises(GenerationInterrupted) as stop:
        run_bucketed(model, None, tasks, run=interrupted)
    assert stop.value.images == ["image 0", "image 1", "image 2"]
    unpadded = SimpleNamespace(fast_path=FastPathConfig(pad_batches=False, buckets=(1, 2, 4)))
    assert run_bucketed(unpadded, None, tasks, run=lambda m, k, t, s: [len(t)]) == [3]


# -- warm-up -------------------------------------------------------------------------


def test_warmup_sizes_parse_and_resolve():
    assert parse_warmup_sizes(["auto"]) == ["auto"]
    assert parse_warmup_sizes([" 512X512", "native"]) == ["512x512", "native"]
    assert parse_warmup_sizes([]) == ["none"]
    for bad, message in (("512", "WIDTHxHEIGHT"), ("500x512", "multiples of 8"), ("32x32", "at least 64")):
        with pytest.raises(ValueError, match=message):
            parse_warmup_sizes([bad])
    with pytest.raises(ValueError, match="stands alone"):
        parse_warmup_sizes(["auto", "512x512"])
    native = (512, 512)
    assert warmup_sizes(["auto"], native, compiled=True) == [native]
    assert warmup_sizes(["auto"], native, compiled=False) == []
    assert warmup_sizes(["none"], native, compiled=True) == []
    assert warmup_sizes(["768x512", "native", "512x512"], native, compiled=False) == [(768, 512), (512, 512)]
    plan = warmup_plan([(512, 512), (768, 768)], (1, 2, 4))
    # With CFG every bucket (UNet rows 2, 4, 8); without, only the rows no CFG call had (1).
    assert [(c.width, c.batch, c.cfg_scale) for c in plan] == [
        (512, 1, 7.0), (512, 2, 7.0), (512, 4, 7.0), (768, 1, 7.0), (768, 2, 7.0), (768, 4, 7.0),
        (512, 1, 1.0), (768, 1, 1.0),
    ]
    assert sorted({c.unet_rows for c in plan}) == [1, 2, 4, 8]
    # Buckets 1, 2, 4, 6: batches of 6 without CFG run 6 rows, which no CFG bucket makes.
    assert [(c.batch, c.cfg_scale) for c in warmup_plan([(512, 512)], (1, 2, 4, 6))][4:] == [(1, 1.0), (6, 1.0)]


def test_warm_up_runs_each_call_and_counts():
    seen, progress = [], WarmupProgress()

    def run(key, tasks):
        assert progress.active and progress.done == len(seen)
        seen.append((key.width, key.height, len(tasks), key.cfg_scale, key.kind))

    shapes = CompiledShapes()
    warm_up(run, "m", warmup_plan([(64, 96)], (1, 2)), progress, shapes)
    assert seen == [(64, 96, 1, 7.0, "txt2img"), (64, 96, 2, 7.0, "txt2img"), (64, 96, 1, 1.0, "txt2img")]
    assert (progress.done, progress.total, progress.active) == (3, 3, False)
    assert not shapes.learning  # closed: only what warm-up ran compiles from now on


STEP_SECONDS = 0.15


def test_readyz_says_warming_with_progress_then_ready(cache_dir):
    """Warm-up forced on the CPU (explicit --warmup-sizes): 64x64 at buckets 1 and 2 with
    CFG and bucket 1 without, each call slowed so the warming state is observable; generations get 503 meanwhile.

    Warm-up and requests run on one thread: CUDA graph trees are per thread, and torch
    2.11's raise an AssertionError (cudagraph_trees.get_obj) when a thread other than the
    one that first used them records a graph."""
    from inference.api.app import create_app
    from inference.config import ServerSettings

    from .server import ThreadedServer

    threads: list[int] = []

    def on_recorded_thread(run):
        slowed = slow_steps(run, seconds=STEP_SECONDS)

        def call(key, tasks, on_step):
            threads.append(threading.get_ident())
            return slowed(key, tasks, on_step)

        return call

    settings = ServerSettings(model="builtin:tiny", cache_dir=cache_dir, warmup_sizes=["64x64"], max_batch_size=2)
    app = create_app(settings, wrap_runner=on_recorded_thread)
    server = ThreadedServer(app)
    server.thread.start()
    seen, refused = [], None
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=server.url, timeout=10) as client:
        try:
            while time.monotonic() < deadline:
                try:
                    response = client.get("/readyz")
                except httpx.HTTPError:
                    time.sleep(0.05)
                    continue
                body = response.json()
                seen.append((response.status_code, body["status"], body.get("done"), body.get("total")))
                if body["status"] == "warming" and refused is None:
                    refused = client.post("/v1/txt2img", json={"prompt": "too early"})
                if response.status_code == 200:
                    break
                time.sleep(0.05)
            ready = client.post("/v1/txt2img", json={"prompt": "after warm-up", "steps": 2}).status_code
        finally:
            server.__exit__()
    warming = [entry for entry in seen if entry[1] == "warming"]
    assert warming, seen
    assert all(code == 503 and total == 3 and done in (0, 1, 2) for code, _, done, total in warming)
    assert seen[-1][:2] == (200, "ready")
    assert refused is not None and refused.status_code == 503 and "warming" in refused.text
    assert ready == 200
    assert app.state.runtime.warmup.done == 3
    assert len(threads) == 4 and len(set(threads)) == 1, threads  # 3 warm-up calls, 1 request


# -- the compile cache ---------------------------------------------------------------


def _fingerprint(**overrides):
    return {"torch": "2.11.0+cu130", "cuda": "13.0", "gpu": "NVIDIA H100 80GB HBM3", "capability": [9, 0], **overrides}


def test_the_cache_key_changes_with_everything_that_changes_the_compiled_code():
    base = dict(model="sd15", revision="abc", shapes=[(512, 512, 1, 7.0)], settings={"mode": "auto"})
    digest = key_digest(cache_key(_fingerprint(), **base))
    variants = [
        cache_key(_fingerprint(torch="2.12.0+cu130"), **base),
        cache_key(_fingerprint(gpu="NVIDIA H200"), **base),
        cache_key(_fingerprint(capability=[8, 9]), **base),
        cache_key(_fingerprint(), **{**base, "model": "sdxl"}),
        cache_key(_fingerprint(), **{**base, "revision": "def"}),
        cache_key(_fingerprint(), **{**base, "shapes": [(512, 512, 1, 7.0), (512, 512, 2, 7.0)]}),
        cache_key(_fingerprint(), **{**base, "settings": {"mode": "max"}}),
    ]
    digests = {key_digest(key) for key in variants}
    assert digest not in digests and len(digests) == len(variants)
    assert digest == key_digest(cache_key(_fingerprint(), **base))  # stable
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert digest == hashlib.sha256(json.dumps(cache_key(_fingerprint(), **base), sort_keys=True).encode()).hexdigest()[:16]


def test_the_cache_lives_on_the_model_volume_and_says_when_warm(tmp_path):
    key = cache_key(_fingerprint(), model="sd15", revision=None, shapes=[(512, 512, 1, 7.0)], settings={})
    environ: dict[str, str] = {}
    first = activate_compile_cache(tmp_path, key, environ=environ, configure_torch=False)
    directory = compile_cache_dir(tmp_path, key)
    assert first.directory == directory and directory.parent == tmp_path / "compile"
    assert not first.warm and first.own
    assert environ["TORCHINDUCTOR_CACHE_DIR"] == str(directory)
    assert environ["TRITON_CACHE_DIR"] == str(directory / "triton")
    assert environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] == environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] == "1"
    assert json.loads((directory / "key.json").read_text())["model"] == "sd15"
    (directory / "fxgraph").mkdir()
    (directory / "fxgraph" / "entry").write_bytes(b"compiled")  # what inductor would leave
    assert activate_compile_cache(tmp_path, key, environ={}, configure_torch=False).warm


def test_an_operators_inductor_cache_dir_wins(tmp_path):
    environ = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "node-ssd")}
    cache = activate_compile_cache(tmp_path / "models", {"k": 1}, environ=environ, configure_torch=False)
    assert cache.directory == tmp_path / "node-ssd" and not cache.own
    assert environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "node-ssd")
    assert not (tmp_path / "models" / "compile").exists()


def test_torchs_own_default_is_not_taken_for_the_operators_choice(tmp_path):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    environ = {"TORCHINDUCTOR_CACHE_DIR": default_cache_dir()}
    cache = activate_compile_cache(tmp_path / "models", {"k": 1}, environ=environ, configure_torch=False)
    assert cache.own and cache.directory == compile_cache_dir(tmp_path / "models", {"k": 1})
    assert environ["TORCHINDUCTOR_CACHE_DIR"] == str(cache.directory)


def test_a_server_process_keeps_its_compiles_on_the_volume(tmp_path):
    """The order a server runs things in: the fast path imports inductor's config at load
    (which sets TORCHINDUCTOR_CACHE_DIR to torch's /tmp default), the compile cache is
    activated later, before warm-up. The volume must win over torch's default."""
    import subprocess
    import sys

    script = (
        "import os, sys, torch\n"
        "import torch._inductor.config\n"
        "from inference.engine.compile_cache import activate_compile_cache\n"
        "print(activate_compile_cache(__import__('pathlib').Path(sys.argv[1]), {'k': 3}).directory)\n"
    )
    environ = {key: value for key, value in os.environ.items() if key != "TORCHINDUCTOR_CACHE_DIR"}
    output = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=environ, check=True,
                            capture_output=True, text=True).stdout
    assert Path(output.strip().splitlines()[-1]) == compile_cache_dir(tmp_path, {"k": 3})


def test_activating_switches_torchs_caches_on(tmp_path, monkeypatch):
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "fx_graph_cache", False)
    monkeypatch.setattr(functorch_config, "enable_autograd_cache", False)
    activate_compile_cache(tmp_path, {"k": 2}, environ={})
    assert inductor_config.fx_graph_cache and functorch_config.enable_autograd_cache


# -- the flags -----------------------------------------------------------------------


def test_compile_and_warmup_flags_and_their_variables():
    _, settings = parse(["serve"], environ={})
    assert settings.compile == "auto" and settings.warmup_sizes == ["auto"]
    _, settings = parse(["serve", "--compile", "max", "--warmup-sizes", "512x512,native"], environ={})
    assert settings.compile == "max" and settings.warmup_sizes == ["512x512", "native"]
    _, settings = parse(["serve"], environ={"SD_COMPILE": "off", "SD_WARMUP_SIZES": "768x768, 1024x1024"})
    assert settings.compile == "off" and settings.warmup_sizes == ["768x768", "1024x1024"]
    _, settings = parse(["serve", "--compile", "auto"], environ={"SD_COMPILE": "off"})
    assert settings.compile == "auto"  # the flag beats the variable


@pytest.mark.parametrize(
    ("argv", "named", "message"),
    [
        (["serve", "--compile", "fast"], "--compile / SD_COMPILE", "'off', 'auto' or 'max'"),
        (["serve", "--warmup-sizes", "513x512"], "--warmup-sizes / SD_WARMUP_SIZES", "multiples of 8"),
    ],
)
def test_bad_fast_path_flags_are_named(argv, named, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(argv, environ={})
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert named in err and message in err
