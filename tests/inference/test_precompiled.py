"""Precompiled forwards (engine/precompiled.py): each warmed shape is compiled ahead of
time and saved, and a restart loads them instead of tracing again.

Checked with a real `aot_compile` of `builtin:tiny`'s UNet and VAE decoder through dynamo's
serializable "eager" backend: dynamo traces, guards, saves and loads exactly as with
inductor, only no kernels are generated. The "restart" is a second load of the model
in this process whose torch.compile fails the test if anything is traced."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from inference.engine.compiled_shapes import CompiledShapes
from inference.engine.fast_path import apply_fast_path, choose_fast_path
from inference.engine.generate import BatchKey, ImageTask
from inference.engine.padded import run_bucketed
from inference.engine.precompiled import (
    ARTIFACT_SUFFIX,
    FAILED_SUFFIX,
    PrecompiledForward,
    PrecompiledStore,
    module_identity,
)
from inference.engine.samplers import resolve
from inference.engine.warmup import WarmupProgress, warm_up, warmup_plan

SIZE = 64
REAL_COMPILE = torch.compile


class Compiles:
    """torch.compile with dynamo's eager backend, counting the traced calls and the
    ahead-of-time compiles it is asked for; `allowed=False` fails the test on either."""

    def __init__(self, allowed: bool = True, ahead_of_time_fails: bool = False):
        self.allowed = allowed
        self.ahead_of_time_fails = ahead_of_time_fails
        self.lazy_calls = 0
        self.ahead_of_time = 0

    def __call__(self, function, **options):
        options.pop("mode", None)  # CUDA graph modes: the eager backend takes none
        inductor = dict(options.pop("options", None) or {})
        guard_filter = inductor.pop("guard_filter_fn", None)  # the rest are inductor's settings
        compiled = REAL_COMPILE(
            function, backend="eager", options={"guard_filter_fn": guard_filter} if guard_filter else None, **options
        )
        counter = self

        class Counted:
            def __call__(self, *args, **kwargs):
                counter.lazy_calls += 1
                assert counter.allowed, "a compiled forward ran dynamo's lazy compile"
                return compiled(*args, **kwargs)

            def aot_compile(self, example_inputs):
                counter.ahead_of_time += 1
                assert counter.allowed, "a forward was compiled ahead of time again"
                if counter.ahead_of_time_fails:
                    raise RuntimeError("graph break in a test")
                return compiled.aot_compile(example_inputs)

        return Counted()


def _load(cache_dir, compiles: Compiles, store: PrecompiledStore | None, **changes):
    from inference.engine.loading import choose_device, load_model

    torch._dynamo.reset()
    config = dataclasses.replace(choose_fast_path("max", "cpu", max_batch_size=4), inductor=(), **changes)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "compile", compiles)
        model = load_model("builtin:tiny", cache_dir=cache_dir, device=choose_device("cpu"), fast_path=config)
    model.compiled_shapes.precompiled_store = store
    return model


def _warm(model):
    plan = warmup_plan([(SIZE, SIZE)], model.fast_path.buckets)
    warm_up(lambda key, tasks: run_bucketed(model, key, tasks), model.name, plan, WarmupProgress(), model.compiled_shapes)


def _images(model, sampler="DPM++ 2M", count=2, adapters=()):
    key = BatchKey(model="builtin:tiny", kind="txt2img", width=SIZE, height=SIZE, steps=3,
                   sampler=resolve(sampler, None), cfg_scale=7.0, adapters=adapters)
    tasks = [ImageTask(prompt=f"a prompt {i}", negative_prompt="", seed=40 + i) for i in range(count)]
    return [image.tobytes() for image in run_bucketed(model, key, tasks)]


@pytest.fixture(scope="module")
def first_start(cache_dir, tmp_path_factory):
    """A first start: warm-up compiles every shape ahead of time and saves it."""
    store = PrecompiledStore(tmp_path_factory.mktemp("compile") / "precompiled")
    compiles = Compiles()
    model = _load(cache_dir, compiles, store)
    _warm(model)
    return model, compiles, store


def test_warm_up_saves_one_artifact_per_warmed_shape(first_start):
    model, compiles, store = first_start
    shapes = model.compiled_shapes
    expected = shapes.compiled_count("unet") + shapes.compiled_count("vae_decoder")
    assert shapes.compiled_count("unet") == 4 and shapes.compiled_count("vae_decoder") == 1
    assert compiles.ahead_of_time == store.saved == expected
    assert compiles.lazy_calls == 0  # every warm-up call ran the ahead-of-time compiled forward
    assert sorted(path.name.split("-")[0] for path in store.directory.glob(f"*{ARTIFACT_SUFFIX}")) == (
        ["unet"] * 4 + ["vae_decoder"]
    )
    assert not list(store.directory.glob(".*.tmp"))  # written whole, then renamed


def test_a_restart_loads_every_shape_and_traces_nothing(first_start, cache_dir):
    first, _, saved = first_start
    store = PrecompiledStore(saved.directory)
    restarted = _load(cache_dir, Compiles(allowed=False), store)
    _warm(restarted)
    assert store.loaded == 5 and store.saved == 0 and store.fallbacks == 0
    # After warm-up: another sampler (int64 timesteps) and batch size, the same graphs.
    images = _images(restarted)
    assert images == _images(first)
    eager = _load(cache_dir, Compiles(allowed=False), None, compile_unet=False, compile_vae_decoder=False,
                  precompile=False)
    assert images == _images(eager)  # the eager backend: bit-exact with the plain modules


def test_lora_adapters_run_through_the_loaded_artifacts(first_start, cache_dir, tmp_path):
    """The artifacts take the UNet's weights as inputs: an adapter merged into them
    (engine/lora_merge.py) changes what a loaded artifact computes, with nothing traced."""
    from inference.engine.builtin import ensure_builtin
    from inference.engine.lora import LoraSpec, load_adapters, take_unet_adapters

    from .lora_fixture import make_tiny_lora

    adapter = make_tiny_lora(ensure_builtin("builtin:tiny", cache_dir), tmp_path / "ink")

    def with_adapter(model):
        model.loras = load_adapters(model.text2img, [LoraSpec(source=str(adapter), name="ink")], cache_dir)
        model.unet_adapters = take_unet_adapters(model.text2img, model.loras)
        return model

    store = PrecompiledStore(first_start[2].directory)
    restarted = with_adapter(_load(cache_dir, Compiles(allowed=False), store))
    _warm(restarted)
    assert store.loaded == 5 and store.fallbacks == 0
    styled = _images(restarted, adapters=(("ink", 0.8, 0.8),))
    eager = with_adapter(_load(cache_dir, Compiles(allowed=False), None, compile_unet=False,
                               compile_vae_decoder=False, precompile=False))
    assert styled == _images(eager, adapters=(("ink", 0.8, 0.8),))
    assert styled != _images(restarted) == _images(first_start[0])


def test_an_artifact_whose_guards_reject_the_module_is_compiled_again_and_replaced(first_start, cache_dir, tmp_path,
                                                                                   caplog):
    """Something the file name does not digest differs (here a weight's requires_grad, which
    PEFT switches off): the artifact is replaced, not left to make dynamo compile at every start."""
    directory = tmp_path / "precompiled"
    directory.mkdir()
    for path in first_start[2].directory.glob(f"*{ARTIFACT_SUFFIX}"):
        (directory / path.name).write_bytes(path.read_bytes())
    before = {path.name: path.read_bytes() for path in directory.iterdir()}

    def differing(store, compiles):
        model = _load(cache_dir, compiles, store)
        model.text2img.unet.conv_in.weight.requires_grad_(True)
        return model

    store, compiles = PrecompiledStore(directory), Compiles()
    with caplog.at_level(logging.WARNING, logger="inference.engine.precompiled"):
        _warm(differing(store, compiles))
    assert (store.loaded, store.saved, store.fallbacks) == (1, 4, 0)
    assert compiles.ahead_of_time == 4 and compiles.lazy_calls == 0
    assert "guards rejected this start's module; compiling it ahead of time again" in caplog.text
    after = {path.name: path.read_bytes() for path in directory.iterdir()}
    assert after.keys() == before.keys()
    assert sum(after[name] != before[name] for name in after) == 4  # the UNet's, replaced in place

    again = PrecompiledStore(directory)
    _warm(differing(again, Compiles(allowed=False)))
    assert (again.loaded, again.saved) == (5, 0)


def test_a_damaged_artifact_is_compiled_again_and_replaced(first_start, cache_dir, tmp_path, caplog):
    _, _, saved = first_start
    directory = tmp_path / "precompiled"
    directory.mkdir()
    for path in saved.directory.glob(f"*{ARTIFACT_SUFFIX}"):
        (directory / path.name).write_bytes(path.read_bytes())
    damaged = next(directory.glob(f"unet-*{ARTIFACT_SUFFIX}"))
    damaged.write_bytes(damaged.read_bytes()[:100])
    store = PrecompiledStore(directory)
    compiles = Compiles()
    with caplog.at_level(logging.WARNING, logger="inference.engine.precompiled"):
        _warm(_load(cache_dir, compiles, store))
    assert (store.loaded, store.saved, compiles.ahead_of_time) == (4, 1, 1)
    assert damaged.stat().st_size > 100_000
    assert any(damaged.name in record.getMessage() and "compiling it again" in record.getMessage()
               for record in caplog.records)


def test_a_shape_that_cannot_be_precompiled_is_left_to_dynamo_and_not_retried(cache_dir, tmp_path, caplog):
    store = PrecompiledStore(tmp_path / "precompiled")
    compiles = Compiles(ahead_of_time_fails=True)
    with caplog.at_level(logging.WARNING, logger="inference.engine.precompiled"):
        model = _load(cache_dir, compiles, store)
        _warm(model)
    assert store.fallbacks == 5 and store.saved == 0
    assert compiles.lazy_calls > 0  # dynamo's own compile served the warm-up
    assert len(list(store.directory.glob(f"*{FAILED_SUFFIX}"))) == 5
    assert "graph break in a test" in next(store.directory.glob(f"*{FAILED_SUFFIX}")).read_text()
    assert any("dynamo compiles this shape at every start" in record.getMessage() for record in caplog.records)

    again = Compiles(ahead_of_time_fails=True)
    _warm(_load(cache_dir, again, PrecompiledStore(store.directory)))
    assert again.ahead_of_time == 0 and again.lazy_calls > 0


def test_a_rejected_guard_falls_back_to_dynamo(caplog):
    calls = []

    def rejecting(module, *args, **kwargs):
        raise RuntimeError("GuardManager check failed, reason: size mismatch")

    forward = PrecompiledForward(
        name="unet", module=object(), identity="x", compile_function=None, options={},
        store=lambda: None, functions={("signature",): rejecting},
    )
    with caplog.at_level(logging.WARNING, logger="inference.engine.precompiled"):
        result = forward.run(("signature",), (1,), {}, lambda *args, **kwargs: calls.append(args) or "dynamo")
    assert result == "dynamo" and calls == [(1,)]
    assert forward.functions[("signature",)] is None  # from now on straight to dynamo
    assert "guards rejected" in caplog.text


def test_a_precompiled_forward_whose_first_call_fails_is_dropped_for_dynamo(tmp_path, caplog):
    """A broken artifact must not keep a replica from starting (the first call is in
    warm-up); once a function has run, its errors are the call's and are raised."""
    store = PrecompiledStore(tmp_path)
    forward = PrecompiledForward(name="unet", module=object(), identity="x", compile_function=None, options={},
                                 store=lambda: store)
    artifact = store.path("unet", "x", ("a",))
    artifact.write_bytes(b"saved by an earlier start")

    def broken(module, *args, **kwargs):
        raise ValueError("bad kernel")

    forward.functions[("a",)] = broken
    with caplog.at_level(logging.WARNING, logger="inference.engine.precompiled"):
        assert forward.run(("a",), (), {}, lambda: "dynamo") == "dynamo"
    assert forward.functions[("a",)] is None and not artifact.exists()
    assert "bad kernel" in artifact.with_suffix(FAILED_SUFFIX).read_text()  # later starts do not retry it

    calls = []

    def flaky(module, *args, **kwargs):
        calls.append(args)
        if len(calls) > 1:
            raise ValueError("this call's own error")
        return "precompiled"

    forward.functions[("b",)] = flaky
    assert forward.run(("b",), (1,), {}, lambda *args: "dynamo") == "precompiled"
    with pytest.raises(ValueError, match="this call's own error"):
        forward.run(("b",), (2,), {}, lambda *args: "dynamo")

    def out_of_memory(module, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    forward.functions[("c",)] = out_of_memory
    with pytest.raises(torch.cuda.OutOfMemoryError):  # engine/oom.py halves the batch
        forward.run(("c",), (), {}, lambda: "dynamo")
    assert forward.functions[("c",)] is out_of_memory


def test_the_artifact_name_depends_on_architecture_and_signature(tmp_path):
    store = PrecompiledStore(tmp_path)
    unet = torch.nn.Linear(2, 2)
    base = module_identity(unet, {"sample_size": 64})
    assert module_identity(unet, {"sample_size": 64}) == base
    assert module_identity(unet, {"sample_size": 96}) != base  # another config
    assert module_identity(unet.to(torch.float16), {"sample_size": 64}) != base  # another dtype
    assert torch.__version__ in base  # and the platform: a shared TORCHINDUCTOR_CACHE_DIR may serve several
    signature = (("tensor", (2, 4, 8, 8), "torch.float32"),)
    path = store.path("unet", base, signature)
    assert path.parent == tmp_path and path.suffix == ARTIFACT_SUFFIX and path.name.startswith("unet-")
    assert store.path("unet", base, signature) == path
    assert store.path("unet", base, (("tensor", (4, 4, 8, 8), "torch.float32"),)) != path
    assert store.path("vae_decoder", base, signature) != path


def test_precompile_is_on_where_it_can_be_and_off_on_request():
    assert choose_fast_path("auto", "cuda", max_batch_size=4).precompile
    assert "precompiled per shape" in choose_fast_path("auto", "cuda", max_batch_size=4).summary()
    assert not choose_fast_path("auto", "cuda", max_batch_size=4, precompile=False).precompile
    assert not choose_fast_path("off", "cuda", max_batch_size=4).precompile


def test_a_dynamic_batch_turns_precompile_off_with_a_reason():
    from types import SimpleNamespace

    class Module:
        def forward(self, sample, timestep=None):
            return sample

        def to(self, memory_format=None):
            pass

    pipeline = SimpleNamespace(
        unet=Module(), vae=SimpleNamespace(decoder=Module(), config=SimpleNamespace(force_upcast=False),
                                           dtype=torch.float16),
    )
    config = dataclasses.replace(
        choose_fast_path("auto", "cuda", max_batch_size=4), dynamic_batch=True, fuse_qkv=False, channels_last=False
    )
    applied = apply_fast_path(pipeline, config, compile_function=lambda function, **options: function,
                              shapes=CompiledShapes())
    assert not applied.precompile and "fullgraph and static shapes" in applied.summary()
    assert pipeline.unet.forward.precompiled is None


def test_the_precompile_flag_and_its_variable():
    from inference.__main__ import parse

    assert parse(["serve"], environ={})[1].precompile == "auto"
    assert parse(["serve"], environ={"SD_PRECOMPILE": "off"})[1].precompile == "off"
    assert parse(["serve", "--precompile", "auto"], environ={"SD_PRECOMPILE": "off"})[1].precompile == "auto"


def test_a_bad_precompile_value_is_named(capsys):
    from inference.__main__ import parse

    with pytest.raises(SystemExit):
        parse(["serve", "--precompile", "sometimes"], environ={})
    assert "precompile" in capsys.readouterr().err


def test_the_server_saves_every_checkpoints_artifacts_beside_inductors_cache(cache_dir, monkeypatch):
    """One store per process, in the compile cache's folder, for every checkpoint that
    precompiles; none for one that does not (`--precompile off`)."""
    from types import SimpleNamespace

    import inference.service.runtime as runtime_module
    from inference.config import ServerSettings
    from inference.engine.warmup import WarmupCall

    monkeypatch.setattr(runtime_module, "platform_fingerprint", lambda device: {"device": device})
    monkeypatch.setattr(runtime_module, "activate_compile_cache",
                        lambda directory, key: SimpleNamespace(directory=directory / "compile" / "key"))
    runtime = runtime_module.Runtime(ServerSettings(model=["builtin:tiny", "builtin:tiny-sdxl"], cache_dir=cache_dir))
    device = SimpleNamespace(device="cuda", dtype_name="float16")
    on, off = choose_fast_path("auto", "cuda", max_batch_size=4), choose_fast_path("auto", "cuda", precompile=False)
    models = [SimpleNamespace(name=name, fast_path=config, device=device, compiled_shapes=CompiledShapes())
              for name, config in (("builtin:tiny", on), ("builtin:tiny-sdxl", on), ("builtin:tiny-sdxl", off))]
    for model in models:
        runtime._use_compile_cache(model, [WarmupCall(64, 64, 1)])
    stores = [model.compiled_shapes.precompiled_store for model in models]
    assert stores[0] is stores[1] and stores[0].directory == cache_dir / "compile" / "key" / "precompiled"
    assert stores[2] is None
