"""Compiled code only for the shapes warm-up ran (engine/compiled_shapes.py), checked with a
real torch.compile of `builtin:tiny`'s UNet and VAE decoder: dynamo traces, guards and
recompiles as it does on a GPU; only the backend is dynamo's own "eager" one (no inductor
kernels to build), counting every graph it is given. A recompile on a GPU costs about a
minute with every queued request waiting, so "no new graph" is what these tests assert."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from inference.engine.compiled_shapes import RECOMPILE_LIMIT, CompiledShapes, float_timestep, input_signature
from inference.engine.fast_path import choose_fast_path
from inference.engine.generate import BatchKey, ImageTask, run_batch
from inference.engine.padded import run_bucketed
from inference.engine.samplers import resolve, sampler_names
from inference.engine.warmup import WarmupProgress, warm_up, warmup_plan

SIZE = 64


REAL_COMPILE = torch.compile


class GraphCounter:
    """torch.compile with a counting backend, in torch.compile's place while the model loads."""

    def __init__(self):
        self.by_function: dict[str, CompileCounterWithBackend] = {}

    def __call__(self, function, **options):
        options.pop("mode", None)  # CUDA graph modes: the eager backend takes none
        counter = self.by_function[function.__qualname__] = CompileCounterWithBackend("eager")
        return REAL_COMPILE(function, backend=counter, **options)

    def graphs(self) -> dict[str, int]:
        return {name.split(".")[0]: counter.frame_count for name, counter in self.by_function.items()}


def _load_compiled(cache_dir, counter: GraphCounter):
    from inference.engine.loading import choose_device, load_model

    # `max` is the preset that compiles on a CPU; inductor's settings do not matter here.
    config = dataclasses.replace(choose_fast_path("max", "cpu", max_batch_size=4), inductor=())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "compile", counter)
        return load_model("builtin:tiny", cache_dir=cache_dir, device=choose_device("cpu"), fast_path=config)


def _key(sampler="Euler a", cfg=7.0, size=SIZE, steps=2):
    return BatchKey(
        model="builtin:tiny", kind="txt2img", width=size, height=size, steps=steps, sampler=resolve(sampler, None),
        cfg_scale=cfg,
    )


def _tasks(count):
    return [ImageTask(prompt=f"prompt {i}", negative_prompt="", seed=10 + i) for i in range(count)]


@pytest.fixture(scope="module")
def warmed(cache_dir):
    torch._dynamo.reset()
    counter = GraphCounter()
    model = _load_compiled(cache_dir, counter)
    plan = warmup_plan([(SIZE, SIZE)], model.fast_path.buckets)
    warm_up(lambda key, tasks: run_bucketed(model, key, tasks), model.name, plan, WarmupProgress(), model.compiled_shapes)
    return model, counter, plan


def test_warm_up_compiles_one_graph_per_unet_batch(warmed):
    model, counter, plan = warmed
    rows = {call.unet_rows for call in plan}
    assert rows == {1, 2, 4, 8}  # buckets 1, 2, 4 with CFG, and 1 without
    assert counter.graphs() == {"UNet2DConditionModel": len(rows), "Decoder": 1}
    assert model.compiled_shapes.compiled_count("unet") == len(rows)
    assert not model.compiled_shapes.learning


def test_no_sampler_batch_or_cfg_compiles_again_after_warm_up(warmed):
    """Samplers pass int64 (DDIM, DPM++, UniPC, PNDM) or float32 (Euler, LMS, Heun)
    timesteps; before they were made one dtype, the first DPM++ 2M request after a warm-up
    with Euler a compiled the UNet again."""
    model, counter, _ = warmed
    before = counter.graphs()
    for sampler in sampler_names():
        for count, cfg in ((1, 7.0), (3, 7.0), (2, 1.0), (4, 0.0)):
            run_bucketed(model, _key(sampler, cfg), _tasks(count))
    assert counter.graphs() == before
    assert model.compiled_shapes.eager_calls == {}  # every call ran compiled code


def test_an_unwarmed_size_runs_eager_compiles_nothing_and_says_so(warmed, caplog):
    model, counter, _ = warmed
    before = counter.graphs()
    with caplog.at_level(logging.WARNING, logger="inference.engine.compiled_shapes"):
        images = run_bucketed(model, _key(size=SIZE + 16, steps=2), _tasks(1))
    assert images[0].size == (SIZE + 16, SIZE + 16)
    assert counter.graphs() == before
    assert model.compiled_shapes.eager_calls == {"unet": 2, "vae_decoder": 1}  # 2 steps, 1 decode
    messages = [record.getMessage() for record in caplog.records]
    assert any("unet: 80x80 at 2 latent rows" in m and "--warmup-sizes" in m for m in messages), messages
    model.compiled_shapes.eager_calls.clear()


def test_what_is_remembered_is_bounded_while_learning():
    shapes = CompiledShapes()
    admitted = [shapes.admit("unet", (("value", repr(weight)),)) for weight in range(RECOMPILE_LIMIT + 10)]
    assert admitted == [True] * RECOMPILE_LIMIT + [False] * 10
    assert shapes.compiled_count("unet") == RECOMPILE_LIMIT


def test_timesteps_become_float32_without_changing_their_value():
    sample = torch.zeros(2, 4, 8, 8)
    args, kwargs = float_timestep((sample, torch.tensor(981)), {"encoder_hidden_states": None})
    assert args[1].dtype == torch.float32 and args[1].item() == 981.0 and args[0] is sample
    args, kwargs = float_timestep((sample,), {"timestep": 1})
    assert kwargs["timestep"].dtype == torch.float32 and kwargs["timestep"].item() == 1.0
    already = torch.tensor(500.5)
    assert float_timestep((sample, already), {})[0][1] is already
    # The signature the gate keys on is the one dynamo guards on: dtypes count.
    assert input_signature((torch.tensor(1),), {}) != input_signature((torch.tensor(1.0),), {})


def test_integer_timesteps_as_float_give_the_same_images(warmed, cache_dir):
    """DDIM's int64 timesteps through the gated UNet (as float32) against the plain
    eager pipeline: bit-identical on the CPU."""
    from inference.engine.loading import choose_device, load_model

    model, _, _ = warmed
    plain = load_model("builtin:tiny", cache_dir=cache_dir, device=choose_device("cpu"))
    key = _key("DDIM", steps=3)
    gated = run_bucketed(model, key, _tasks(1))[0]
    expected = run_batch(plain, key, _tasks(1))[0]
    assert gated.tobytes() == expected.tobytes()


def test_img2img_inpaint_and_variations_at_a_warmed_size_run_compiled(warmed):
    """The derived pipelines share the UNet and call it with the same signature."""
    from PIL import Image

    model, counter, _ = warmed
    before = counter.graphs()
    init = Image.new("RGB", (SIZE, SIZE), (120, 80, 40))
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (16, 16, 48, 48))
    tasks = [ImageTask(prompt="p", negative_prompt="", seed=3, init_image=init, mask=mask, subseed=9, subseed_strength=0.3)]
    for kind in ("img2img", "inpaint"):
        key = dataclasses.replace(_key("DPM++ 2M", steps=4), kind=kind, denoising_strength=0.75)
        assert len(run_bucketed(model, key, tasks)) == 1
    assert counter.graphs() == before
    assert model.compiled_shapes.eager_calls == {}


def test_the_server_counts_eager_calls_in_a_metric(cache_dir):
    """sd_uncompiled_calls_total{module}: what an operator watches to see that a size
    (or LoRA set) clients use was not warmed."""
    from types import SimpleNamespace

    from prometheus_client import generate_latest

    from inference.config import ServerSettings
    from inference.service.runtime import Runtime

    runtime = Runtime(ServerSettings(model="builtin:tiny", cache_dir=cache_dir))
    model = SimpleNamespace(name="builtin:tiny", load_seconds=1.0, compiled_shapes=CompiledShapes())
    runtime._loaded(model)  # the registry's on_load hook
    model.compiled_shapes.close()
    for _ in range(3):
        model.compiled_shapes.admit("unet", (("tensor", (2, 4, 10, 10), "torch.float16"),))
    text = generate_latest(runtime.metrics.registry).decode()
    assert 'sd_uncompiled_calls_total{module="unet"} 3.0' in text


def test_a_dynamic_batch_dimension_compiles_two_unet_graphs_for_every_bucket(cache_dir):
    """`dynamic_batch` (bench.gpu's sweep decides whether a preset uses it): rows 2 and 4
    share one symbolic graph; batch 1 without CFG (1 row) stays specialised. The whole
    UNet traces as one graph with a symbolic batch (fullgraph), and the images are the
    static path's. (Buckets 1 and 2 here: on the CPU, batch invariance's padding of calls
    under 8 rows is a branch on the row count, so 8 rows would be a third graph; CUDA has
    no such branch.)"""
    from inference.engine.loading import choose_device, load_model

    torch._dynamo.reset()
    counter = GraphCounter()
    config = dataclasses.replace(choose_fast_path("max", "cpu", max_batch_size=2), inductor=(), dynamic_batch=True)
    automatic = torch._dynamo.config.automatic_dynamic_shapes
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(torch, "compile", counter)
            model = load_model("builtin:tiny", cache_dir=cache_dir, device=choose_device("cpu"), fast_path=config)
        assert "batch dimension dynamic" in model.fast_path.summary()
        plan = warmup_plan([(SIZE, SIZE)], model.fast_path.buckets)
        warm_up(lambda key, tasks: run_bucketed(model, key, tasks), model.name, plan, WarmupProgress(),
                model.compiled_shapes)
        assert counter.graphs()["UNet2DConditionModel"] == 2
        assert model.compiled_shapes.compiled_count("unet") == 3  # the gate still admits each warmed shape
        plain = load_model("builtin:tiny", cache_dir=cache_dir, device=choose_device("cpu"))
        key = _key(steps=2)
        assert run_bucketed(model, key, _tasks(2))[1].tobytes() == run_batch(plain, key, _tasks(2))[1].tobytes()
    finally:
        torch._dynamo.config.automatic_dynamic_shapes = automatic
        torch._dynamo.reset()
